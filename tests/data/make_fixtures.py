"""Write the small synthetic data files committed in tests/data (run it again after changing tests/utils/geodata.py).

    .venv/bin/python tests/data/make_fixtures.py

Every file is a stand-in of the same name and format as its counterpart in ../shared/data (see
tests/data/README.md), small enough to commit (~200 KB together): the tests that only need imagery and
labels of the right format read these, so they run where ../shared is absent.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/, for utils.* as pytest imports it

from utils.geodata import apls_pair, write_crops, write_solaris_like, write_vegas_like  # noqa: E402

DATASETS = ("spacenet-vegas", "solaris-road-mask", "massachusetts-crops", "cil-2022", "apls-pair")


def main() -> None:
    for name in DATASETS:
        shutil.rmtree(HERE / name, ignore_errors=True)
    write_vegas_like(HERE / "spacenet-vegas")
    write_solaris_like(HERE / "solaris-road-mask")
    write_crops(HERE / "massachusetts-crops", {"train": 3, "val": 3, "test": 3}, 64, "jpg")
    write_crops(HERE / "cil-2022", {"train": 3, "val": 3}, 64, "rgba", seed=7)
    truth, proposal = apls_pair()
    (HERE / "apls-pair").mkdir()
    for name, fc in (("ground_truth", truth), ("proposal", proposal)):
        (HERE / "apls-pair" / f"{name}.geojson").write_text(json.dumps(fc, indent=1) + "\n")
    files = sorted(p for name in DATASETS for p in (HERE / name).rglob("*") if p.is_file())
    print(f"{len(files)} files, {sum(p.stat().st_size for p in files) / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
