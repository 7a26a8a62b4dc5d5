"""An app's data in and out as files other tools read: a folder per concept, CSV, JSON Lines, COCO.

Export writes every input's original image under `images/` (named by input id) and its record: id,
file, concepts, not_concepts, metadata, geo and source URL (CSV: lists joined by `;`, metadata as JSON).
Import reads CSV or JSON Lines rows of the same shape (Clarifai's and Nyckel's bulk files map onto it:
an image `file` path relative to the list, or a `url`, its concepts, metadata), or a COCO
annotations.json (an image's categories become its concepts, its boxes regions): every row is checked
first and bad rows are reported with their line numbers, nothing written; then rows go in batches,
each one transaction. Rows whose id is already stored with the same image are skipped, so a run that
stopped is resumed by running it again, and a second run adds nothing.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any

import msgspec

from loupe.errors import InvalidArgument
from loupe.ids import check_id, new_id
from loupe.intake.imaging import content_hash
from loupe.intake.inputs import AddedInputs, Inputs, NewInput, Presence
from loupe.intake.labels import check_metadata
from loupe.store.geo import check_point
from loupe.store.records import BoundingBox, GeoPoint, Input, Region, RegionConcept

CSV_COLUMNS = ["id", "file", "url", "concepts", "not_concepts", "metadata", "latitude", "longitude"]
BATCH = 32
_SAFE_FILE = re.compile(r"[^A-Za-z0-9._-]")


class Format(StrEnum):
    FOLDER = "folder"
    CSV = "csv"
    JSONL = "jsonl"
    COCO = "coco"


class RowRegion(msgspec.Struct, frozen=True):
    """A box (fractions of the image's height and width, as Clarifai's regions) around one concept."""

    concept: str
    top_row: float
    left_col: float
    bottom_row: float
    right_col: float


class Row(msgspec.Struct, kw_only=True):
    """One input of an export or import file."""

    id: str = ""
    file: str = ""  # relative to the list file
    url: str = ""
    concepts: list[str] = []
    not_concepts: list[str] = []
    metadata: dict[str, Any] = {}
    latitude: float | None = None
    longitude: float | None = None
    regions: list[RowRegion] = []  # COCO's boxes


class ExportReport(msgspec.Struct):
    inputs: int
    dest: str


class BulkReport(msgspec.Struct):
    rows: int
    added: int = 0
    skipped: int = 0  # already stored with the same image (by id, or, for rows without one, by content)


def _file_name(record: Input, ext: str) -> str:
    return _SAFE_FILE.sub("_", record.id)[:100] + "-" + record.sha256[:8] + ext


def _ext(data: bytes) -> str:
    return ".png" if data.startswith(b"\x89PNG") else ".webp" if data[8:12] == b"WEBP" else ".jpg"


def _row(record: Input, file: str) -> Row:
    return Row(id=record.id, file=file, url=record.source, concepts=list(record.concepts),
               not_concepts=list(record.not_concepts), metadata=dict(record.metadata),
               latitude=record.geo.latitude if record.geo else None,
               longitude=record.geo.longitude if record.geo else None)


def export(inputs: Inputs, app_id: str, dest: Path, fmt: Format) -> ExportReport:
    """Write the app's inputs into the new folder `dest` in `fmt`."""
    if dest.exists() and any(dest.iterdir()):
        raise InvalidArgument(f"{dest} is not empty: export into a new folder")
    dest.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[Input, Row]] = []
    for record in _all(inputs, app_id):
        data = inputs.image(app_id, record.id)
        if fmt is Format.FOLDER:  # a folder per (first) concept, `loupe import` reads it back
            folder = dest / (record.concepts[0] if record.concepts else "_unlabeled")
            file = f"{folder.name}/{_file_name(record, _ext(data))}"
        else:
            file = f"images/{_file_name(record, _ext(data))}"
        (dest / file).parent.mkdir(parents=True, exist_ok=True)
        (dest / file).write_bytes(data)
        rows.append((record, _row(record, file)))
    if fmt in (Format.JSONL, Format.FOLDER):
        with (dest / ("inputs.jsonl" if fmt is Format.JSONL else "labels.jsonl")).open("w") as f:
            for _, row in rows:
                f.write(msgspec.json.encode(row).decode() + "\n")
    elif fmt is Format.CSV:
        with (dest / "inputs.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(CSV_COLUMNS)
            for _, row in rows:
                writer.writerow([row.id, row.file, row.url, ";".join(row.concepts), ";".join(row.not_concepts),
                                 json.dumps(row.metadata) if row.metadata else "",
                                 "" if row.latitude is None else row.latitude,
                                 "" if row.longitude is None else row.longitude])
    else:
        _write_coco(dest, rows)
    return ExportReport(inputs=len(rows), dest=str(dest))


def _write_coco(dest: Path, rows: list[tuple[Input, Row]]) -> None:
    """COCO: images, categories, and one annotation per (image, concept) with the region's box when the
    input has one for it (COCO boxes are pixels: x, y, width, height)."""
    names = sorted({c for _, row in rows for c in row.concepts})
    category = {name: i + 1 for i, name in enumerate(names)}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for n, (record, row) in enumerate(rows, start=1):
        images.append({"id": n, "file_name": row.file, "width": record.width, "height": record.height,
                       "loupe_input_id": record.id})
        boxes = {c.id: r.box for r in record.regions for c in r.concepts}
        for concept in row.concepts:
            box = boxes.get(concept)
            entry: dict[str, Any] = {"id": len(annotations) + 1, "image_id": n, "category_id": category[concept]}
            if box is not None:
                entry["bbox"] = [box.left_col * record.width, box.top_row * record.height,
                                 (box.right_col - box.left_col) * record.width,
                                 (box.bottom_row - box.top_row) * record.height]
            annotations.append(entry)
    coco = {"images": images, "annotations": annotations,
            "categories": [{"id": i, "name": name} for name, i in category.items()]}
    (dest / "annotations.json").write_text(json.dumps(coco, indent=1))


def _all(inputs: Inputs, app_id: str) -> Iterator[Input]:
    page = 1
    while True:
        found = inputs.list_page(app_id, page=page, per_page=1000)
        yield from found
        if len(found) < 1000:
            return
        page += 1


def read_rows(path: Path) -> list[Row]:
    """Rows of a CSV (header row, CSV_COLUMNS), JSON Lines or COCO (.json) file, every one checked;
    InvalidArgument lists the bad ones by line number (COCO: by image id)."""
    text = path.read_text()
    bad: list[str] = []
    rows: list[Row] = []
    if path.suffix.lower() == ".json":
        numbered: Iterator[tuple[Any, Any]] = _coco_images(path, text)
        parse: Callable[[Any], Row] = _coco_row
    elif path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        unknown = set(reader.fieldnames or []) - set(CSV_COLUMNS)
        if unknown:
            raise InvalidArgument(f"{path}: unknown column(s) {', '.join(sorted(unknown))} "
                                  f"(known: {', '.join(CSV_COLUMNS)})")
        numbered = ((reader.line_num, r) for r in reader)
        parse = _csv_row
    else:
        numbered = ((n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip())
        parse = _jsonl_row
    for line, raw in numbered:
        try:
            rows.append(_checked(parse(raw)))
        except (InvalidArgument, msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
            bad.append(f"{'line ' if isinstance(line, int) else ''}{line}: {exc}")
    if bad:
        shown = "; ".join(bad[:20]) + (f"; ... {len(bad) - 20} more" if len(bad) > 20 else "")
        raise InvalidArgument(f"{path}: {len(bad)} bad row(s), nothing imported: {shown}")
    return rows


class _CocoImage(msgspec.Struct):
    id: int | str
    file_name: str
    width: int = 0
    height: int = 0
    loupe_input_id: str = ""  # what `loupe export --format coco` writes: the input's id comes back


class _CocoAnnotation(msgspec.Struct):
    image_id: int | str
    category_id: int | str
    bbox: list[float] = []  # pixels: x, y, width, height


class _CocoCategory(msgspec.Struct):
    id: int | str
    name: str


class _Coco(msgspec.Struct):
    images: list[_CocoImage]
    categories: list[_CocoCategory] = []
    annotations: list[_CocoAnnotation] = []


def _coco_images(path: Path, text: str) -> Iterator[tuple[str, Row | InvalidArgument]]:
    """Each COCO image as a Row: its categories (by name) as concepts, its boxes as regions in fractions.
    A file that is not COCO at all is refused whole; a bad image or annotation is reported by image id."""
    try:
        coco = msgspec.json.decode(text, type=_Coco)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidArgument(f"{path}: not a COCO annotations file: {exc}") from None
    names = {c.id: c.name for c in coco.categories}
    by_image: dict[int | str, list[_CocoAnnotation]] = {}
    for a in coco.annotations:
        by_image.setdefault(a.image_id, []).append(a)
    for image in coco.images:
        where = f"image {image.id} ({image.file_name})"
        row = Row(id=image.loupe_input_id, file=image.file_name)
        try:
            for a in by_image.get(image.id, []):
                if a.category_id not in names:
                    raise InvalidArgument(f"annotation names category {a.category_id}, which is not in categories")
                concept = names[a.category_id]
                if concept not in row.concepts:
                    row.concepts.append(concept)
                if a.bbox:
                    row.regions.append(_fraction_box(concept, a.bbox, image))
        except InvalidArgument as exc:
            yield where, exc  # reported with the others by read_rows
            continue
        yield where, row


def _coco_row(found: Row | InvalidArgument) -> Row:
    if isinstance(found, InvalidArgument):
        raise found
    return found


def _fraction_box(concept: str, bbox: list[float], image: _CocoImage) -> RowRegion:
    if len(bbox) != 4 or image.width <= 0 or image.height <= 0:
        raise InvalidArgument("a bbox needs [x, y, width, height] and the image's width and height")
    x, y, w, h = bbox
    box = RowRegion(concept, y / image.height, x / image.width, (y + h) / image.height, (x + w) / image.width)
    if not (0 <= box.top_row < box.bottom_row <= 1.0001 and 0 <= box.left_col < box.right_col <= 1.0001):
        raise InvalidArgument(f"bbox {bbox} is not inside the {image.width}x{image.height} image")
    return box


def _csv_row(raw: dict[str, str]) -> Row:
    def floats(name: str) -> float | None:
        return float(raw[name]) if raw.get(name) else None

    return Row(id=raw.get("id") or "", file=raw.get("file") or "", url=raw.get("url") or "",
               concepts=[c for c in (raw.get("concepts") or "").split(";") if c],
               not_concepts=[c for c in (raw.get("not_concepts") or "").split(";") if c],
               metadata=json.loads(raw["metadata"]) if raw.get("metadata") else {},
               latitude=floats("latitude"), longitude=floats("longitude"))


def _jsonl_row(raw: str) -> Row:
    return msgspec.json.decode(raw, type=Row)


def _checked(row: Row) -> Row:
    if bool(row.file) == bool(row.url):
        raise InvalidArgument("give exactly one of file and url")
    if row.id:
        check_id("input", row.id)
    for concept in (*row.concepts, *row.not_concepts):
        check_id("concept", concept)
    check_metadata(row.metadata)
    if (row.latitude is None) != (row.longitude is None):
        raise InvalidArgument("give both latitude and longitude, or neither")
    if row.latitude is not None and row.longitude is not None:
        check_point(row.longitude, row.latitude)
    return row


def _count(report: BulkReport, done: AddedInputs) -> None:
    """A row without an id whose image the app holds is linked to that input (its labels merged), not added."""
    report.added += len(done.inputs) - done.linked
    report.skipped += done.linked


def import_rows(inputs: Inputs, app_id: str, path: Path, fetch: Callable[[str], bytes],
                rows: list[Row] | None = None) -> BulkReport:
    """Add the rows of a CSV or JSON Lines file (checked first, all of them; `rows` if read already);
    `fetch` reads URL rows."""
    rows = read_rows(path) if rows is None else rows
    report = BulkReport(rows=len(rows))
    items: list[NewInput] = []
    for row in rows:
        data = fetch(row.url) if row.url else (path.parent / row.file).read_bytes()
        if row.id and inputs.presence(app_id, row.id, content_hash(data)) is Presence.SAME:
            report.skipped += 1
            continue
        geo = (GeoPoint(longitude=row.longitude, latitude=row.latitude)
               if row.latitude is not None and row.longitude is not None else None)
        regions = [Region(id=new_id(), box=BoundingBox(top_row=r.top_row, left_col=r.left_col, bottom_row=r.bottom_row,
                                                       right_col=r.right_col), concepts=[RegionConcept(r.concept)])
                   for r in row.regions]
        items.append(NewInput(image=data, id=row.id or None, concepts=row.concepts, not_concepts=row.not_concepts,
                              metadata=row.metadata, geo=geo, source=row.url, regions=regions))
        if len(items) == BATCH:
            _count(report, inputs.add(app_id, items))
            items = []
    if items:
        _count(report, inputs.add(app_id, items))
    return report
