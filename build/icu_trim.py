"""A smaller ``libicudata`` for the Linux bundle: ICU's data without what TGFlow never uses.

Qt's wheel links ICU, whose data library (~32 MB) holds every locale's names, collations,
converters and word-break dictionaries. The program speaks English and Russian and converts
text in Python, so the bundle keeps ICU's locale-independent data and the root, ``en*`` and
``ru*`` locales, and drops the rest (:func:`kept`); ICU falls back to the root locale for a
missing one, as it does for any locale it does not know.

The data is an ICU "common data" package (``CmnD``) exported as the symbol ``icudtNN_dat``.
:func:`repack` filters its table of contents; :func:`build_library` writes the package into a
new shared library with the same soname and symbol (``gcc``). Everything but the last step is
pure Python, and nothing here runs outside Linux.
"""

from __future__ import annotations

import re
import struct
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

#: Locales kept: the interface's languages (build/bundle_rules.py LANGUAGES) and their regions.
_KEPT_LOCALE = re.compile(r"^(?:en|ru)(?:_[A-Za-z0-9]+)*\.res$")
#: A locale's bundle name (``de.res``, ``zh_Hant_TW.res``) as opposed to a data file's
#: (``supplementalData.res``, ``root.res``, ``pool.res``, ``res_index.res``).
_LOCALE = re.compile(r"^[a-z]{2,3}(?:_[A-Za-z0-9]+)*\.res$")
#: Whole kinds of data Qt never asks ICU for here: transliteration, charset converters
#: (Qt converts UTF-8/16/32 and Latin-1 itself; the program's files are read by Python), and the
#: dictionaries that segment words of Chinese, Japanese, Khmer, Burmese, Lao and Thai text.
_DROPPED = re.compile(r"^(?:translit/.*|[^/]*\.cnv|brkitr/[^/]*\.dict)$")
_ALIGN = 16


def kept(name: str) -> bool:
    """Whether the package item ``name`` (``icudt73l/coll/de.res``: prefix dropped) is kept."""
    item = name.split("/", 1)[1] if "/" in name else name
    if _DROPPED.match(item):
        return False
    base = item.rsplit("/", 1)[-1]
    if base == "res_index.res":  # each tree's list of its locales, not a locale
        return True
    return not _LOCALE.match(base) or bool(_KEPT_LOCALE.match(base))


def _items(package: bytes) -> tuple[int, list[tuple[str, bytes]]]:
    """The package's header size and its items (name, data) in table order."""
    header_size, magic = struct.unpack_from("<H2s", package, 0)
    if magic != b"\xda\x27" or package[12:16] != b"CmnD":
        raise ValueError("not an ICU common data package")
    count = struct.unpack_from("<I", package, header_size)[0]
    toc = header_size
    entries = [struct.unpack_from("<II", package, toc + 4 + 8 * i) for i in range(count)]
    items = []
    for i, (name_at, data_at) in enumerate(entries):
        end = entries[i + 1][1] if i + 1 < count else len(package) - toc
        name_end = package.index(b"\0", toc + name_at)
        items.append(
            (package[toc + name_at : name_end].decode("ascii"), package[toc + data_at : toc + end])
        )
    return header_size, items


def _pad(data: bytes, start: int) -> bytes:
    return data + b"\0" * (-(start + len(data)) % _ALIGN)


def repack(package: bytes, keep: Callable[[str], bool] = kept) -> tuple[bytes, int, int]:
    """``package`` with only the items ``keep`` accepts: (new package, items kept, dropped)."""
    header_size, items = _items(package)
    chosen = [(name, data) for name, data in items if keep(name)]
    names = b""
    name_offsets = []
    table = 4 + 8 * len(chosen)
    for name, _data in chosen:
        name_offsets.append(table + len(names))
        names += name.encode("ascii") + b"\0"
    body = _pad(names, header_size + table)
    data_offsets = []
    blobs = b""
    for _name, data in chosen:
        data_offsets.append(table + len(body) + len(blobs))
        blobs += _pad(data, header_size + table + len(body) + len(blobs))
    toc = struct.pack("<I", len(chosen)) + b"".join(
        struct.pack("<II", n, d) for n, d in zip(name_offsets, data_offsets, strict=True)
    )
    return package[:header_size] + toc + body + blobs, len(chosen), len(items) - len(chosen)


def exported_data(library: bytes) -> tuple[str, bytes]:
    """The ``icudtNN_dat`` symbol of an ELF64 little-endian ``libicudata``: (name, bytes)."""
    if library[:6] != b"\x7fELF\x02\x01":
        raise ValueError("not a 64-bit little-endian ELF file")
    section_table = struct.unpack_from("<Q", library, 0x28)[0]
    entry_size, count = struct.unpack_from("<HH", library, 0x3A)
    sections = [
        struct.unpack_from("<IIQQQQIIQQ", library, section_table + i * entry_size)
        for i in range(count)
    ]
    for symbols in (s for s in sections if s[1] == 11):  # SHT_DYNSYM
        strings = sections[symbols[6]][4]
        for i in range(symbols[5] // 24):
            name_at, _info, _other, index, value, size = struct.unpack_from(
                "<IBBHQQ", library, symbols[4] + i * 24
            )
            name_end = library.index(b"\0", strings + name_at)
            name = library[strings + name_at : name_end].decode("ascii")
            if re.fullmatch(r"icudt\d+_dat", name) and 0 < index < len(sections):
                _n, _t, _f, address, offset, _size, *_rest = sections[index]
                start = offset + value - address
                return name, library[start : start + size]
    raise ValueError("no icudtNN_dat symbol")


def build_library(source: Path, target: Path) -> tuple[int, int]:
    """Write the trimmed ``source`` library to ``target``: (items kept, items dropped)."""
    symbol, package = exported_data(source.read_bytes())
    smaller, n_kept, n_dropped = repack(package)
    soname = source.name
    with tempfile.TemporaryDirectory(prefix="tgflow-icu-") as tmp:
        data = Path(tmp) / "icudata.dat"
        data.write_bytes(smaller)
        assembly = Path(tmp) / "icudata.S"
        assembly.write_text(
            "\t.section .rodata\n"
            f"\t.globl {symbol}\n"
            f"\t.type {symbol}, @object\n"
            "\t.balign 16\n"
            f"{symbol}:\n"
            f'\t.incbin "{data}"\n'
            f"\t.size {symbol}, . - {symbol}\n"
            '\t.section .note.GNU-stack,"",@progbits\n',
            encoding="ascii",
        )
        # gcc: the assembler and linker of the build machine (build-essential's, or binutils')
        command = ["gcc", "-shared", "-nostdlib", f"-Wl,-soname,{soname}", "-o", str(target)]
        subprocess.run([*command, str(assembly)], check=True)  # noqa: S603
    return n_kept, n_dropped


_ICU_DATA = re.compile(r"(?:^|/)libicudata\.so\.\d+$")


def replace_in_toc(
    binaries: list[tuple[str, str, str]], workdir: Path
) -> list[tuple[str, str, str]]:
    """PyInstaller's binaries with every ``libicudata`` replaced by its trimmed build (kept as
    it is, with a warning, when it cannot be trimmed: the bundle is then bigger, not broken)."""
    result = []
    for dest, source, kind in binaries:
        if _ICU_DATA.search(dest.replace("\\", "/")):
            target = workdir / "icu-trimmed" / Path(dest).name
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                n_kept, n_dropped = build_library(Path(source), target)
            except (OSError, ValueError, subprocess.CalledProcessError) as exc:
                print(f"icu_trim: {dest} kept whole: {exc}")
            else:
                before, after = Path(source).stat().st_size, target.stat().st_size
                print(
                    f"icu_trim: {dest}: {n_kept} items kept, {n_dropped} dropped, "
                    f"{before / 1e6:.1f} -> {after / 1e6:.1f} MB"
                )
                source = str(target)
        result.append((dest, source, kind))
    return result
