"""build/icu_trim.py: the Linux bundle's smaller ICU data, checked without building."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest

from tests.helpers.build_scripts import icu_package, load

icu = load("icu_trim")


@pytest.mark.parametrize(
    ("name", "is_kept"),
    [
        ("icudt73l/ru.res", True),
        ("icudt73l/ru_RU.res", True),
        ("icudt73l/en_001.res", True),
        ("icudt73l/coll/root.res", True),
        ("icudt73l/coll/ucadata.icu", True),
        ("icudt73l/brkitr/line.brk", True),
        ("icudt73l/supplementalData.res", True),
        ("icudt73l/zoneinfo64.res", True),
        ("icudt73l/pool.res", True),
        ("icudt73l/res_index.res", True),
        ("icudt73l/cnvalias.icu", True),
        ("icudt73l/de.res", False),
        ("icudt73l/zh_Hant_TW.res", False),
        ("icudt73l/coll/zh.res", False),
        ("icudt73l/zone/fr_CA.res", False),
        ("icudt73l/brkitr/cjdict.dict", False),
        ("icudt73l/translit/root.res", False),
        ("icudt73l/ibm-5347_P100-1998.cnv", False),
    ],
)
def test_only_english_russian_and_locale_free_data_are_kept(name: str, is_kept: bool) -> None:
    assert icu.kept(name) is is_kept


def test_repacking_keeps_the_chosen_items_intact_and_aligned() -> None:
    items = {
        "icudt73l/de.res": b"german" * 7,
        "icudt73l/en.res": b"english!" * 3,
        "icudt73l/root.res": b"r" * 33,
    }
    smaller, n_kept, n_dropped = icu.repack(icu_package(items))
    assert (n_kept, n_dropped) == (2, 1)
    header_size, left = icu._items(smaller)
    assert [name for name, _ in left] == ["icudt73l/en.res", "icudt73l/root.res"]
    for name, data in left:  # the item, then only alignment padding
        assert data.rstrip(b"\0") == items[name].rstrip(b"\0")
    count = struct.unpack_from("<I", smaller, header_size)[0]
    for i in range(count):
        _name_at, data_at = struct.unpack_from("<II", smaller, header_size + 4 + 8 * i)
        assert (header_size + data_at) % 16 == 0


def test_what_is_not_icu_data_is_refused() -> None:
    with pytest.raises(ValueError, match="not an ICU common data package"):
        icu.repack(b"\x20\x00\x00\x00" + b"\0" * 60)
    with pytest.raises(ValueError, match="ELF"):
        icu.exported_data(b"MZ" + b"\0" * 100)


def test_the_wheels_icu_data_trims_to_a_fraction() -> None:
    import PyQt6

    found = sorted((Path(PyQt6.__file__).parent / "Qt6" / "lib").glob("libicudata.so.*"))
    if not sys.platform.startswith("linux") or not found:
        pytest.skip("Qt's wheel ships ICU on Linux only")
    symbol, package = icu.exported_data(found[0].read_bytes())
    assert symbol.startswith("icudt") and symbol.endswith("_dat")
    smaller, n_kept, _n_dropped = icu.repack(package)
    names = [name for name, _ in icu._items(smaller)[1]]
    assert any(name.endswith("/ru.res") for name in names)
    assert any(name.endswith("/coll/ucadata.icu") for name in names)
    assert len(smaller) < len(package) / 4 and n_kept == len(names)
