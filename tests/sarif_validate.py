#!/usr/bin/env python3
"""Validate SARIF logs against the vendored OASIS SARIF 2.1.0 schema.

usage: sarif_validate.py SCHEMA LOG...
Prints one line per log (ok, or the first schema error with its JSON path) and exits 0 only
when every log is valid; exit 2 when the schema or the validator cannot be loaded.
"""
import json
import sys


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        import jsonschema
    except ImportError:
        print("sarif_validate: python3-jsonschema is not installed (make deps)", file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        schema = json.load(f)
    validator = jsonschema.Draft4Validator(schema)
    bad = 0
    for path in argv[2:]:
        try:
            with open(path) as f:
                log = json.load(f)
        except (OSError, ValueError) as e:
            print(f"{path}: not JSON: {e}")
            bad += 1
            continue
        errors = sorted(validator.iter_errors(log), key=lambda e: list(e.absolute_path))
        if errors:
            e = errors[0]
            where = "/".join(str(p) for p in e.absolute_path)
            print(f"{path}: {len(errors)} schema error(s); first at /{where}: {e.message[:300]}")
            bad += 1
        else:
            print(f"{path}: ok")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
