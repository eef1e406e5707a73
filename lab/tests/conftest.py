"""The lab's tests: the product's fixtures (tests/conftest.py) reused, and the lab's scripts imported as modules."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "lab"
for path in (LAB, ROOT):  # the lab's modules (variants, cv), the product's
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

# tests/conftest.py under another name (this file is the 'conftest' module here): its fixtures and helpers, here too.
_spec = importlib.util.spec_from_file_location("product_conftest", ROOT / "tests" / "conftest.py")
_product = importlib.util.module_from_spec(_spec)
sys.modules["product_conftest"] = _product
_spec.loader.exec_module(_product)
globals().update({k: v for k, v in vars(_product).items() if not k.startswith("__")})


def import_lab(name: str):
    """lab/<name>.py as a fresh module (a script's globals as a test finds them)."""
    spec = importlib.util.spec_from_file_location(name, LAB / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
