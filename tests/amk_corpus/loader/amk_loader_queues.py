"""Print, as JSON, the per-SM queues AMK's own loader builds for a program (AMK's
MegakernelVM._assign_sms called on a stand-in object, grid = the target's SM count). torch and
numpy are stubbed: only the assignment runs, no GPU is touched. Nothing of AMK is copied.

usage: amk_loader_queues.py AMK_SRC PROGRAM.json > queues.json
The NAME.json files beside it hold the queues for ../NAME.json(.gz), made this way (AMK a514bbc)."""
import sys, types, json
if len(sys.argv) != 3:
    sys.exit(__doc__)
sys.path.insert(0, sys.argv[1])
class _Any:
    def __call__(self, *a, **k): return _Any()
    def __getattr__(self, n): return _Any()
    def __getitem__(self, k): return _Any()
    def __or__(self, o): return _Any()
    __ror__ = __or__
for m in ("torch", "numpy"):
    mod = types.ModuleType(m)
    mod.__getattr__ = lambda name: _Any()
    sys.modules[m] = mod
from schedule.ir import MegakernelProgram
from vm.loader import MegakernelVM
prog = MegakernelProgram.load(sys.argv[2])
self = types.SimpleNamespace(prog=prog, grid_dim=prog.target.num_sms, num_sms=prog.target.num_sms,
                             sm_round_robin=False, _topo=prog.topological_order())
MegakernelVM._assign_sms(self)
json.dump([q for q in self._queues], sys.stdout)
