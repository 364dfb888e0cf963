"""Strict numpy PLY reader (ASCII, binary little/big endian; vertices with optional normals and colours,
faces as list properties), run in the isolated reader process like the other scan parsers.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pose3dfr.data.scan_formats import (MAX_HEADER_BYTES, ScanArrays, ScanLimits, check_indices, fan_triangulate,
                                        header_count, line_ends, number_rows, point_columns)
from pose3dfr.errors import InvalidScanError

_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


@dataclass
class _Element:
    name: str
    count: int
    scalars: list[tuple[str, str]]  # (property name, numpy type) in file order, lists excluded
    order: list[str]  # every property name in file order
    lists: dict[str, tuple[str, str]]  # list property name -> (count type, index type)


def _ply_header(handle, limits: ScanLimits) -> tuple[str, list[_Element]]:
    head = handle.read(MAX_HEADER_BYTES)
    if not re.match(rb"ply\r?\n", head):
        raise InvalidScanError(f"{limits.name}: not a PLY file (no 'ply' header)")
    match = re.search(rb"\nend_header\r?\n", head)
    if match is None:
        raise limits.corrupt("PLY", "no end_header within the first 64 KiB")
    handle.seek(match.end())
    fmt, elements = "", []
    for line in head[: match.start()].splitlines()[1:]:
        parts = line.decode("ascii", "replace").split()
        if not parts or parts[0] in ("comment", "obj_info"):
            continue
        if parts[0] == "format" and len(parts) == 3 and parts[1] in ("ascii", "binary_little_endian",
                                                                     "binary_big_endian"):
            fmt = parts[1]
        elif parts[0] == "element" and len(parts) == 3:
            elements.append(_Element(parts[1], header_count(parts[2].encode(), "element", limits, "PLY"), [], [], {}))
        elif parts[0] == "property" and elements and len(parts) == 3 and parts[1] in _PLY_TYPES:
            elements[-1].scalars.append((parts[2], _PLY_TYPES[parts[1]]))
            elements[-1].order.append(parts[2])
        elif (parts[0] == "property" and elements and len(parts) == 5 and parts[1] == "list"
              and parts[2] in _PLY_TYPES and parts[3] in _PLY_TYPES):
            elements[-1].lists[parts[4]] = (_PLY_TYPES[parts[2]], _PLY_TYPES[parts[3]])
            elements[-1].order.append(parts[4])
        else:
            raise limits.corrupt("PLY", f"unsupported header line {' '.join(parts)[:40]!r}")
    if not fmt:
        raise limits.corrupt("PLY", "no format line")
    names = [e.name for e in elements]
    if "vertex" not in names:
        raise limits.corrupt("PLY", "the header declares no vertex element")
    for element in elements:
        (limits.points if element.name == "vertex" else limits.faces)(element.count)
    return fmt, elements


def read_ply(path: Path, limits: ScanLimits) -> ScanArrays:
    with path.open("rb") as handle:
        fmt, elements = _ply_header(handle, limits)
        body_start, size = handle.tell(), path.stat().st_size
        needed = [e for e in elements[: max(i for i, e in enumerate(elements) if e.name in ("vertex", "face")) + 1]]
        least = sum(e.count * _ply_least_bytes(e, fmt) for e in needed)
        if size - body_start < least:
            raise InvalidScanError(f"{limits.name}: truncated PLY ({size} bytes, the header promises at least "
                                   f"{body_start + least})")
        if fmt == "ascii":
            tables = _ply_ascii(handle.read(), needed, limits)
        else:
            tables = [_ply_binary_element(handle, e, ">" if fmt == "binary_big_endian" else "<", limits)
                      for e in needed]
    by_name = {e.name: t for e, t in zip(needed, tables)}
    xyz, normals, colors = point_columns(by_name["vertex"], limits, "PLY")
    faces = None
    face_table = by_name.get("face", {})
    polygons = face_table.get("vertex_indices", face_table.get("vertex_index"))
    if polygons is not None and len(polygons):
        faces = check_indices(fan_triangulate(polygons), len(xyz), limits, "mesh")
    return ScanArrays(xyz, normals, colors, faces)


def _ply_least_bytes(element: _Element, fmt: str) -> int:
    """Fewest bytes one record of `element` can take (a count the file cannot hold is refused before allocating)."""
    if fmt == "ascii":
        return 2 * len(element.order)  # one digit and one separator a value
    return sum(np.dtype(t).itemsize for _, t in element.scalars) + sum(
        np.dtype(c).itemsize for c, _ in element.lists.values())


def _ply_ascii(body: bytes, elements: list[_Element], limits: ScanLimits) -> list[dict]:
    """ASCII PLY: one record a line, element after element; a row count short of the header is 'truncated'."""
    ends = line_ends(body)
    tables, line = [], 0
    for element in elements:
        if line + element.count > len(ends):
            raise InvalidScanError(f"{limits.name}: truncated PLY ({max(len(ends) - line, 0)} of {element.count} "
                                   f"{element.name} rows)")
        start = 0 if line == 0 else int(ends[line - 1])
        block = body[start: int(ends[line + element.count - 1])] if element.count else b""
        line += element.count
        if not element.lists:
            rows = number_rows(block, np.float64, limits, "PLY", element.name)
            if element.count and rows.shape != (element.count, len(element.order)):
                raise limits.corrupt("PLY", f"{element.name} rows hold {rows.shape[1]} values, the header "
                                            f"declares {len(element.order)} (or a row is blank)")
            tables.append({n: rows[:, i].astype(t) for i, (n, t) in enumerate(element.scalars)} if element.count else
                          {n: np.zeros(0, t) for n, t in element.scalars})
        else:
            tables.append(_ply_ascii_lists(block, element, limits))
    return tables


def _ply_ascii_lists(block: bytes, element: _Element, limits: ScanLimits) -> dict:
    """Records with a list property (faces); vectorised when every record has the same length."""
    if element.count == 0:
        return {}
    try:
        rows = np.loadtxt(io.BytesIO(block), dtype=np.int64, ndmin=2, comments=None)
    except ValueError:
        rows = None
    if rows is not None and len(rows) == element.count and element.order[0] in element.lists and len(element.order) == 1:
        n = rows.shape[1] - 1
        if (rows[:, 0] == n).all():
            return {element.order[0]: rows[:, 1:]}
    out = {name: [] for name in element.order}
    lines = [ln for ln in block.split(b"\n") if ln.strip()]
    if len(lines) != element.count:
        raise limits.corrupt("PLY", f"{len(lines)} {element.name} rows, the header declares {element.count}")
    for line in lines:
        tokens, pos = line.split(), 0
        try:
            for name in element.order:
                if name in element.lists:
                    k = int(tokens[pos])
                    if k < 0 or pos + 1 + k > len(tokens):
                        raise ValueError
                    out[name].append(np.asarray([int(t) for t in tokens[pos + 1: pos + 1 + k]], np.int64))
                    pos += 1 + k
                else:
                    out[name].append(float(tokens[pos]))
                    pos += 1
        except (ValueError, IndexError):
            raise limits.corrupt("PLY", f"a {element.name} row does not match the header") from None
        if pos != len(tokens):
            raise limits.corrupt("PLY", f"a {element.name} row holds more values than the header declares")
    return out


def _ply_binary_element(handle, element: _Element, order: str, limits: ScanLimits) -> dict:
    """One binary element: one vectorised read when every record has the same size, else a record walk."""
    if not element.lists:
        dtype = np.dtype([(f"p{i}", order + t) for i, (_, t) in enumerate(element.scalars)])
        data = np.fromfile(handle, dtype=dtype, count=element.count)
        if len(data) != element.count:
            raise InvalidScanError(f"{limits.name}: truncated PLY ({len(data)} of {element.count} {element.name} records)")
        return {n: data[f"p{i}"] for i, (n, _) in enumerate(element.scalars)}
    if element.count == 0:
        return {name: [] for name in element.order}
    start = handle.tell()
    first = _ply_record_lengths(handle, element, order)  # list lengths of the first record
    handle.seek(start)
    if first is not None:
        fields, types = [], dict(element.scalars)
        for i, name in enumerate(element.order):
            if name in element.lists:
                count_t, index_t = element.lists[name]
                fields += [(f"n{i}", order + count_t), (f"i{i}", order + index_t, (first[name],))]
            else:
                fields.append((f"p{i}", order + types[name]))
        record = np.dtype(fields)
        fits = element.count * record.itemsize <= os.fstat(handle.fileno()).st_size - start  # before allocating
        data = np.fromfile(handle, dtype=record, count=element.count) if fits else np.zeros(0, record)
        if len(data) == element.count and all((data[f"n{i}"] == first[n]).all()
                                              for i, n in enumerate(element.order) if n in element.lists):
            return {n: (data[f"i{i}"].astype(np.int64) if n in element.lists else data[f"p{i}"])
                    for i, n in enumerate(element.order)}
        handle.seek(start)
    return _ply_binary_walk(handle, element, order, limits)


def _ply_record_lengths(handle, element: _Element, order: str) -> dict | None:
    lengths, types = {}, dict(element.scalars)
    for name in element.order:
        if name in element.lists:
            count_t, index_t = element.lists[name]
            raw = handle.read(np.dtype(count_t).itemsize)
            if len(raw) < np.dtype(count_t).itemsize:
                return None
            lengths[name] = int(np.frombuffer(raw, order + count_t)[0])
            if lengths[name] < 0:
                return None
            handle.seek(lengths[name] * np.dtype(index_t).itemsize, os.SEEK_CUR)
        else:
            handle.seek(np.dtype(types[name]).itemsize, os.SEEK_CUR)
    return lengths


def _ply_binary_walk(handle, element: _Element, order: str, limits: ScanLimits) -> dict:
    """Records of varying length (mixed polygons), walked one by one; bounded by the face limit."""
    data = handle.read()
    out, pos, types = {name: [] for name in element.order}, 0, dict(element.scalars)
    for _ in range(element.count):
        for name in element.order:
            if name in element.lists:
                count_t, index_t = (np.dtype(order + t) for t in element.lists[name])
                if pos + count_t.itemsize > len(data):
                    raise limits.corrupt("mesh", "fewer face records than the header declares")
                k = int(np.frombuffer(data, count_t, 1, pos)[0])
                pos += count_t.itemsize
                if k < 0 or pos + k * index_t.itemsize > len(data):
                    raise limits.corrupt("mesh", "a face list runs past the end of the file")
                out[name].append(np.frombuffer(data, index_t, k, pos).astype(np.int64))
                pos += k * index_t.itemsize
            else:
                item = np.dtype(order + types[name])
                if pos + item.itemsize > len(data):
                    raise limits.corrupt("mesh", "fewer face records than the header declares")
                out[name].append(np.frombuffer(data, item, 1, pos)[0])
                pos += item.itemsize
    return out
