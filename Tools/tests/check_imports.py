#!/usr/bin/env python3
"""Checks that every Swift target of Package.swift declares what its sources import, and imports
what it declares: `swift package dump-package` gives the targets and their dependencies, the
sources give the `import` lines (system modules aside). Prints the mapping; exit 1 on a mismatch.

    python3 Tools/tests/check_imports.py
"""
import json
import os
import re
import subprocess
import sys

SYSTEM = {"Foundation", "FoundationEssentials", "Glibc", "Darwin", "Dispatch", "Testing", "XCTest", "os", "Synchronization"}
# Products of package dependencies: the module each one is imported as.
PRODUCT_MODULES = {"ArgumentParser": "ArgumentParser", "Collections": "Collections", "Crypto": "Crypto", "Yams": "Yams"}
IMPORT = re.compile(r"^\s*(?:@testable\s+|@_implementationOnly\s+)?import\s+(?:(?:struct|class|enum|func|protocol|typealias|var|let)\s+)?([A-Za-z_][A-Za-z0-9_]*)")


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    os.chdir(root)
    package = json.loads(subprocess.run(["swift", "package", "dump-package"], check=True, capture_output=True, text=True).stdout)
    problems = []
    for target in package["targets"]:
        kind = target["type"]
        if kind in ("system", "binary", "plugin"):
            continue
        name = target["name"]
        path = target.get("path") or os.path.join("Tests" if kind == "test" else "Sources", name)
        imports = set()
        for folder, _, files in os.walk(path):
            for f in files:
                if not f.endswith(".swift"):
                    continue
                in_string = False
                for line in open(os.path.join(folder, f), encoding="utf-8"):
                    # Skip Swift multi-line string literals (embedded Python scripts import things too).
                    if line.count('"""') % 2 == 1:
                        in_string = not in_string
                        continue
                    m = None if in_string else IMPORT.match(line)
                    if m and m.group(1) not in SYSTEM:
                        imports.add(m.group(1))
        if not any(f.endswith(".swift") for _, _, fs in os.walk(path) for f in fs):
            continue  # a C target
        declared = set()
        for dep in target["dependencies"]:
            if "byName" in dep:
                declared.add(dep["byName"][0])
            elif "target" in dep:
                declared.add(dep["target"][0])
            elif "product" in dep:
                declared.add(PRODUCT_MODULES.get(dep["product"][0], dep["product"][0]))
        print(f"{name}: imports {', '.join(sorted(imports)) or '-'}")
        for missing in sorted(imports - declared):
            problems.append(f"{name} imports {missing} without declaring it")
        for unused in sorted(declared - imports):
            problems.append(f"{name} declares {unused} but imports it nowhere")
    for p in problems:
        print("problem: " + p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
