#!/usr/bin/python3
"""Reads DICOM files with pydicom and prints, per file, one JSON line: the DICOM JSON model of the file meta group
and dataset (pydicom's to_json_dict), or the error pydicom raised. Used by the interop tests as the reference.

usage: /usr/bin/python3 pydicom_json.py --list            (prints pydicom's sample data directory)
       /usr/bin/python3 pydicom_json.py FILE...
"""
import json
import os
import sys
import warnings

import pydicom

warnings.simplefilter("ignore")


def read(path):
    with open(path, "rb") as f:
        head = f.read(132)
    # Files without 'DICM' are valid headerless datasets: pydicom needs force=True to read them.
    force = not (len(head) >= 132 and head[128:132] == b"DICM")
    ds = pydicom.dcmread(path, force=force)
    result = {}
    if getattr(ds, "file_meta", None) is not None:
        result.update(ds.file_meta.to_json_dict())
    result.update(ds.to_json_dict())
    return result


def main():
    if sys.argv[1:] == ["--list"]:
        print(os.path.join(os.path.dirname(pydicom.__file__), "data"))
        print(pydicom.__version__)
        return
    for path in sys.argv[1:]:
        try:
            out = {"path": path, "ok": True, "json": read(path)}
        except Exception as e:  # the reference tool's failures are data for the comparison
            out = {"path": path, "ok": False, "error": f"{type(e).__name__}: {e}"}
        print(json.dumps(out, default=str))


main()
