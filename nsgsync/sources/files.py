"""Manifests and topology from YAML or JSON files and folders (or standard input).

Bad input stops here, with file, line, object and field named; what Kubernetes' strict
decoding refuses (duplicate keys, excessive aliasing, wrong types) is refused here too.
Kinds nsgsync has no use for are skipped.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.reader import Reader, ReaderError

from nsgsync.errors import InputError, TopologyError, did_you_mean, excerpt
from nsgsync.model import (
    ContainerPort,
    ForeignPolicy,
    Inventory,
    LabelSelector,
    NetworkPolicy,
    Peer,
    PodInfo,
    PolicyPort,
    PolicyRule,
    PolicyType,
    Protocol,
    Topology,
    adminpolicy,
    cilium,
)
from nsgsync.model.k8s import (
    check_port_name,
    dns1123_label_errors,
    dns1123_subdomain_errors,
    invalid,
    label_key_errors,
    label_value_errors,
)
from nsgsync.model.kinds import NETWORK_POLICY_V1, classify, group_of
from nsgsync.model.tiers import TPolicy

_SUFFIXES = {".yaml", ".yml", ".json"}
_TEMPLATE_KINDS = {
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "ReplicationController",
    "Job",
}
STDIN = "-"
STDIN_NAME = "<stdin>"

# Deeper nesting than this is refused: no manifest needs it, and it is how a hostile file
# turns a recursive reader into a crash.
MAX_DEPTH = 100
_MERGE_TAG = "tag:yaml.org,2002:merge"
_MESSAGE_LIMIT = 600
_OBJECT_KEYS = ("apiVersion", "kind", "metadata", "spec", "status")
_META_KEYS = (
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
    "clusterName",
)


@dataclass(frozen=True)
class Document:
    """One object: where it starts, its body, and (from YAML) its node, for error lines."""

    file: str
    line: int
    body: dict[str, Any]
    node: Node | None = None


# --- YAML and JSON, read the way the API server's decoder reads them ---


class _Refused(Exception):
    """A document the reader refuses (not a YAML syntax error): message and 1-based line."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def _allowed_alias_ratio(decoded: int) -> float:
    # go-yaml's limit, which Kubernetes' YAML decoder applies ("excessive aliasing"): small
    # documents may alias freely, large ones mostly not; linear in between.
    if decoded <= 400_000:
        return 0.99
    if decoded >= 4_000_000:
        return 0.10
    return 0.99 - 0.89 * (decoded - 400_000) / 3_600_000


class _Shape:
    """Walks a document's node graph once: depth, self-reference and alias expansion.

    Aliases make the graph a DAG whose expansion (what every later reader walks) can be
    exponential in the file's size: a few hundred bytes can stand for gigabytes. Recursion
    stops at MAX_DEPTH, so it never comes near Python's own limit.
    """

    def __init__(self) -> None:
        self.seen: dict[int, tuple[int, int]] = {}  # id -> (expanded size, height)
        self.on_path: set[int] = set()
        self.aliased = 0

    def revisit(self, node: Node, level: int, size: int, height: int) -> None:
        """A second visit is an alias: its whole expansion comes on top."""
        self.aliased += size
        if level + height - 1 > MAX_DEPTH:
            raise _Refused(f"nesting deeper than {MAX_DEPTH} levels", _line(node))

    def enter(self, node: Node, level: int, key: int) -> None:
        """A first visit: not too deep, and not inside itself."""
        if level > MAX_DEPTH:
            raise _Refused(f"nesting deeper than {MAX_DEPTH} levels", _line(node))
        if key in self.on_path:
            raise _Refused("an alias refers to a node that contains it", _line(node))
        self.on_path.add(key)

    def walk(self, node: Node, level: int) -> tuple[int, int]:
        key = id(node)
        known = self.seen.get(key)
        if known is not None:
            self.revisit(node, level, *known)
            return known
        self.enter(node, level, key)
        total, height = 1, 1
        kids = (
            [n for pair in node.value for n in pair]
            if isinstance(node, MappingNode)
            else node.value
        )
        for kid in kids:
            if kid.__class__ is ScalarNode:
                total += 1
            else:
                kid_size, kid_height = self.walk(kid, level + 1)
                total += kid_size
                height = max(height, kid_height + 1)
        self.on_path.discard(key)
        self.seen[key] = (total, height)
        return total, height


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


_STR_TAG = "tag:yaml.org,2002:str"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"


class _Fallback(Exception):
    """A node the one-pass builder leaves to PyYAML's constructor (merge keys, odd tags)."""


class _Builder(_Shape):
    """A document's value from its nodes in one pass, checked as it is built.

    Depth, self-reference, alias expansion and duplicate keys are checked on the way, as
    `_Shape` and `_strict_mapping` do. PyYAML's generic constructor walks every node
    through generators and a state machine, and the checks needed a walk of their own:
    together they were most of the time spent reading a large folder. What this builder
    does not handle (merge keys, tags beyond map, seq and scalars) raises _Fallback, and
    the document is read the generic way.
    """

    def __init__(self, loader: Any) -> None:
        super().__init__()
        self.loader = loader
        self.constructors: dict[Any, Any] = loader.yaml_constructors
        self.done: dict[int, tuple[Any, int, int]] = {}  # id -> (value, expanded size, height)

    def scalar(self, node: ScalarNode) -> Any:
        tag = node.tag
        if tag == _STR_TAG:
            return node.value
        construct = self.constructors.get(tag)
        if construct is None:
            raise _Fallback
        return construct(self.loader, node)

    def build(self, node: Node, level: int) -> tuple[Any, int, int]:
        """(value, expanded size, height) of `node`, at nesting `level`."""
        cls = node.__class__
        if cls is ScalarNode:
            return self.scalar(node), 1, 1  # type: ignore[arg-type]
        key = id(node)
        known = self.done.get(key)
        if known is not None:
            self.revisit(node, level, known[1], known[2])
            return known
        self.enter(node, level, key)
        size, height = 1, 1
        value: Any
        if cls is SequenceNode and node.tag == _SEQ_TAG:
            value = []
            for kid in node.value:
                item, kid_size, kid_height = self.build(kid, level + 1)
                value.append(item)
                size += kid_size
                if kid_height >= height:
                    height = kid_height + 1
        elif cls is MappingNode and node.tag == _MAP_TAG:
            assert isinstance(node, MappingNode)
            value = {}
            for key_node, value_node in node.value:
                if key_node.__class__ is not ScalarNode or key_node.tag == _MERGE_TAG:
                    raise _Fallback
                name = self.scalar(key_node)
                if name in value:
                    raise _Refused(
                        f"duplicate key {excerpt(name)} (first at line "
                        f"{_first_line(node, key_node, name, self)}); keep one (kubectl "
                        "refuses a key written twice)",
                        _line(key_node),
                    )
                item, kid_size, kid_height = self.build(value_node, level + 1)
                value[name] = item
                size += 1 + kid_size
                if kid_height >= height:
                    height = kid_height + 1
        else:
            raise _Fallback
        self.on_path.discard(key)
        self.done[key] = (value, size, height)
        return value, size, height

    def document(self, root: Node) -> Any:
        value, expanded, _ = self.build(root, 1)
        _check_aliasing(expanded, self.aliased, root)
        return value


def _first_line(mapping: MappingNode, again: Node, name: Any, builder: _Builder) -> int:
    for key_node, _ in mapping.value:
        if key_node is again:
            break
        if builder.scalar(key_node) == name:
            return _line(key_node)
    return _line(again)  # pragma: no cover - the key was seen before `again`


def _check_shape(root: Node) -> None:
    """Refuse a document nested too deep, that refers to itself, or that expands too far."""
    if isinstance(root, ScalarNode):
        return
    shape = _Shape()
    expanded, _ = shape.walk(root, 1)
    _check_aliasing(expanded, shape.aliased, root)


def _check_aliasing(expanded: int, aliased: int, root: Node) -> None:
    """go-yaml's rule against alias bombs, which Kubernetes' YAML decoder applies."""
    if aliased > 100 and expanded > 1000 and aliased / expanded > _allowed_alias_ratio(expanded):
        raise _Refused(
            f"excessive aliasing: the document expands to {expanded} nodes, "
            f"{aliased} of them through aliases",
            _line(root),
        )


def _strict_mapping(self: Any, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
    """SafeConstructor.construct_mapping, refusing a key written twice.

    PyYAML keeps the last of two equal keys; kubectl's strict decoding refuses them, and the
    silent choice would drop, say, the first of two `ingress:` lists.
    """
    explicit = [k for k, _ in node.value if k.tag != _MERGE_TAG]
    merged = len(explicit) != len(node.value)
    mapping: dict[Any, Any] = SafeConstructor.construct_mapping(self, node, deep=deep)
    if merged or len(mapping) != len(explicit):
        first: dict[tuple[type, Any], int] = {}
        for key_node in explicit:
            key = self.constructed_objects.get(key_node)
            try:
                marker = (type(key), key)
                hash(marker)
            except TypeError:
                continue
            line = key_node.start_mark.line + 1
            if marker in first:
                raise _Refused(
                    f"duplicate key {excerpt(key)} (first at line {first[marker]}); "
                    "keep one (kubectl refuses a key written twice)",
                    line,
                )
            first[marker] = line
    return mapping


def _guarded(
    construct: Callable[[Any, ScalarNode], Any],
) -> Callable[[Any, ScalarNode], Any]:
    # int() of 5,000 digits, or a date like 2024-13-45, raise ValueError: a bad value, not
    # a crash.
    def wrapper(self: Any, node: ScalarNode) -> Any:
        try:
            return construct(self, node)
        except (ValueError, OverflowError) as exc:
            raise _Refused(
                f"cannot read value {excerpt(node.value)}: {excerpt(str(exc))}",
                node.start_mark.line + 1,
            ) from None

    return wrapper


def _compose_with_depth(self: Any, parent: Node | None, index: Any) -> Any:
    # The pure-Python composer recurses once per level; stop well before Python's limit.
    self._nsgsync_depth = getattr(self, "_nsgsync_depth", 0) + 1
    try:
        if self._nsgsync_depth > MAX_DEPTH:
            raise _Refused(
                f"nesting deeper than {MAX_DEPTH} levels", self.peek_event().start_mark.line + 1
            )
        return Composer.compose_node(self, parent, index)
    finally:
        self._nsgsync_depth -= 1


def _remembering(base: type[Any]) -> Callable[[Any, Any, str, tuple[bool, bool]], str]:
    """`base.resolve`, remembering the tag of each short plain scalar.

    A plain scalar's tag depends on its text alone (YAML 1.1's implicit types: `on` is a
    bool, `010` an int), found by trying regular expressions one by one: 1.7 million
    times at 10,000 policies, for a few thousand distinct texts (label keys, `TCP`, port
    numbers). The same answer, from a dict. Path resolvers would make the tag depend on
    where the node is; the safe loaders have none, and a loader that had would not be
    given this."""
    assert not base.yaml_path_resolvers
    resolve = base.resolve
    tags: dict[tuple[str, bool], str] = {}

    def remembered(self: Any, kind: Any, value: str, implicit: tuple[bool, bool]) -> str:
        if kind is not ScalarNode or not implicit[0] or len(value) > 64:
            tag: str = resolve(self, kind, value, implicit)
            return tag
        key = (value, implicit[1])
        known = tags.get(key)
        if known is not None:
            return known
        tag = resolve(self, kind, value, implicit)
        if len(tags) < 100_000:  # bounded: a file of random words must not grow it
            tags[key] = tag
        return tag

    return remembered


def _loader_class(base: type[Any]) -> type[Any]:
    namespace: dict[str, Any] = {"construct_mapping": _strict_mapping}
    namespace["resolve"] = _remembering(base)
    if base is yaml.SafeLoader:
        namespace["compose_node"] = _compose_with_depth
    cls: type[Any] = type(f"_Strict{base.__name__}", (base,), namespace)
    constructors = dict(cls.yaml_constructors)
    for tag in ("int", "float", "timestamp"):
        full = f"tag:yaml.org,2002:{tag}"
        cls.add_constructor(full, _guarded(constructors[full]))
    return cls


# libyaml's C parser when PyYAML was built with it (several times faster on large folders),
# else the pure-Python one; both give the same YAML 1.1 values and node marks.
PURE_LOADER: type[Any] = _loader_class(yaml.SafeLoader)
FAST_LOADER: type[Any] = _loader_class(getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _shown(value: object) -> str:
    """A key or name as it may appear in a message: itself when short and printable."""
    if isinstance(value, str) and value.isprintable() and 0 < len(value) <= 100:
        return value
    return excerpt(value)


def _file_name(path: Path) -> str:
    # A file name may hold a newline or a terminal escape: the error stays one clean line.
    name = str(path)
    if name.isprintable():
        return name
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)


def _line_of(text: str, position: int) -> int:
    return text.count("\n", 0, max(position, 0)) + 1


def _yaml_documents(text: str, name: str, *, loader: type[Any]) -> Iterator[Document]:
    parser = loader(text)
    try:
        while parser.check_node():
            node = parser.get_node()
            if node is None:
                continue
            line = node.start_mark.line + 1
            try:
                body = _Builder(parser).document(node)
            except _Fallback:
                _check_shape(node)
                body = parser.construct_document(node)
            if body is None:
                continue
            if not isinstance(body, dict):
                raise InputError(
                    f"a document must be a mapping (a Kubernetes object), not {excerpt(body)}",
                    file=name,
                    line=line,
                )
            yield Document(name, line, body, node)
    except _Refused as exc:
        raise InputError(exc.message, file=name, line=exc.line) from None
    except ReaderError as exc:
        # libyaml reports a byte offset, PyYAML a character one: find the character again.
        bad = Reader.NON_PRINTABLE.search(text)
        code = ord(bad.group()) if bad else exc.character
        raise InputError(
            f"character U+{code:04X} is not allowed in YAML (a control character: remove it, "
            "or write it as an escape in a double-quoted string)",
            file=name,
            line=_line_of(text, bad.start()) if bad else None,
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        problem = " ".join(str(problem).split())
        raise InputError(
            f"malformed YAML: {excerpt(problem, limit=200)}", file=name, line=line
        ) from None
    finally:
        parser.dispose()


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    body = dict(pairs)
    if len(body) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(
                    f"duplicate key {excerpt(key)}: keep one (kubectl refuses a key written twice)",
                    None,
                )
            seen.add(key)
    return body


def _no_constant(value: str) -> Any:
    raise _Refused(f"{value} is not a JSON number Kubernetes accepts", None)


def _json_depth_ok(body: Any) -> bool:
    stack = [(body, 1)]
    while stack:
        value, level = stack.pop()
        if level > MAX_DEPTH:
            return False
        if isinstance(value, dict):
            stack.extend((v, level + 1) for v in value.values() if isinstance(v, (dict, list)))
        elif isinstance(value, list):
            stack.extend((v, level + 1) for v in value if isinstance(v, (dict, list)))
    return True


_JSON_SPACE = re.compile(r"[ \t\n\r]*")


def _skip_space(text: str, pos: int) -> int:
    match = _JSON_SPACE.match(text, pos)
    return match.end() if match else pos


def _json_documents(text: str, name: str) -> Iterator[Document]:
    # A stream of JSON objects, as kubectl reads one (usually there is just one).
    decoder = json.JSONDecoder(object_pairs_hook=_json_pairs, parse_constant=_no_constant)
    pos = _skip_space(text, 0)
    while pos < len(text):
        line = _line_of(text, pos)
        try:
            body, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise InputError(f"malformed JSON: {exc.msg}", file=name, line=exc.lineno) from None
        except _Refused as exc:
            raise InputError(exc.message, file=name, line=exc.line or line) from None
        except RecursionError:
            raise InputError(
                f"nesting deeper than {MAX_DEPTH} levels", file=name, line=line
            ) from None
        except ValueError as exc:  # an integer of more digits than Python converts
            raise InputError(f"malformed JSON: {excerpt(str(exc))}", file=name, line=line) from None
        if not _json_depth_ok(body):
            raise InputError(f"nesting deeper than {MAX_DEPTH} levels", file=name, line=line)
        if not isinstance(body, dict):
            raise InputError(
                f"a document must be an object (a Kubernetes object), not {excerpt(body)}",
                file=name,
                line=line,
            )
        yield Document(name, line, body)
        pos = _skip_space(text, end)


def parse_text(
    text: str, name: str, *, json_text: bool, loader: type[Any] = FAST_LOADER
) -> Iterator[Document]:
    """The documents of `text` (YAML, or JSON when `json_text`), Lists flattened."""
    docs = _json_documents(text, name) if json_text else _yaml_documents(text, name, loader=loader)
    for doc in docs:
        yield from _flatten(doc)


def read_documents(path: Path, *, loader: type[Any] = FAST_LOADER) -> Iterator[Document]:
    if str(path) == STDIN:
        name = STDIN_NAME
        try:
            text = sys.stdin.read().removeprefix("\ufeff")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read standard input: {exc}", file=name) from None
        # kubectl's sniffing: a stream that starts with '{' is JSON.
        yield from parse_text(text, name, json_text=text.lstrip().startswith("{"), loader=loader)
        return
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read file: {exc}", file=_file_name(path)) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"not UTF-8 text: byte {data[exc.start]:#04x} cannot be decoded (save it as UTF-8)",
            file=_file_name(path),
            line=data.count(b"\n", 0, exc.start) + 1,
        ) from None
    yield from parse_text(text, _file_name(path), json_text=path.suffix == ".json", loader=loader)


def iter_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Every manifest named or under a named folder, sorted, each real file once.

    Symbolic links are followed, to files and to folders; a folder that links back to one
    of its own parents is an error, not a loop.
    """
    # A file by its device and inode, which a symbolic link or a second path to it
    # shares: one stat per file, where resolving the path took one per component.
    seen: set[tuple[int, int]] = set()
    stdin_used = False
    for raw in paths:
        if str(raw) == STDIN:
            if stdin_used:
                raise InputError("standard input (-f -) given twice", file=STDIN_NAME)
            stdin_used = True
            yield Path(STDIN)
            continue
        path = Path(raw)
        if path.is_dir():
            files = _walk(path, ())
        elif path.is_file():
            files = iter([path])
        elif path.is_symlink():
            raise InputError(
                "a broken symbolic link (its target does not exist)", file=_file_name(path)
            )
        else:
            raise InputError("no such file or folder", file=_file_name(path))
        for file in files:
            try:
                stat = file.stat()
            except OSError as exc:  # gone or unreadable since the folder was listed
                raise InputError(f"cannot read file: {exc}", file=_file_name(file)) from None
            real = (stat.st_dev, stat.st_ino)
            if real not in seen:
                seen.add(real)
                yield file


def _walk(folder: Path, parents: tuple[Path, ...]) -> Iterator[Path]:
    real = folder.resolve()
    if real in parents:
        raise InputError(
            f"a symbolic link loop: this folder is {real}, which contains it; remove the link "
            f"or point -f elsewhere",
            file=_file_name(folder),
        )
    try:
        children = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise InputError(f"cannot read folder: {exc}", file=_file_name(folder)) from None
    for entry in children:
        if entry.name.startswith("."):
            continue
        child = Path(entry.path)
        if entry.is_dir(follow_symlinks=True):
            yield from _walk(child, (*parents, real))
        elif entry.is_file(follow_symlinks=True):
            if child.suffix in _SUFFIXES:
                yield child
        elif entry.is_symlink() and child.suffix in _SUFFIXES:
            raise InputError(
                "a broken symbolic link (its target does not exist)", file=_file_name(child)
            )


def _flatten(doc: Document) -> Iterator[Document]:
    kind = doc.body.get("kind")
    if isinstance(kind, str) and kind.endswith("List") and "items" in doc.body:
        items = doc.body["items"]
        if items is None:
            return
        if not isinstance(items, list):
            raise InputError(
                f"a {excerpt(kind)}'s items must be a list, not {excerpt(items)}",
                file=doc.file,
                line=_line_at(doc, ["items"]),
                field="items",
            )
        nodes = _node_at(doc.node, ["items"])
        for i, item in enumerate(items):
            item_node = nodes.value[i] if isinstance(nodes, SequenceNode) else None
            line = item_node.start_mark.line + 1 if item_node is not None else doc.line
            if not isinstance(item, dict):
                raise InputError(
                    "a list item must be a mapping",
                    file=doc.file,
                    line=line,
                    field=f"items[{i}]",
                )
            yield from _flatten(Document(doc.file, line, item, item_node))
    else:
        yield doc


def _node_at(node: Node | None, path: Iterable[str | int]) -> Node | None:
    for part in path:
        if isinstance(node, MappingNode) and isinstance(part, str):
            found = [v for k, v in node.value if isinstance(k, ScalarNode) and k.value == part]
            node = found[-1] if found else None
        elif (
            isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value)
        ):
            node = node.value[part]
        else:
            return None
    return node


def _line_at(doc: Document, path: Iterable[str | int]) -> int:
    """The line of the deepest node along `path` (a field's line), else the document's."""
    node = doc.node
    line = doc.line
    for part in path:
        if isinstance(node, MappingNode) and isinstance(part, str):
            found = [(k, v) for k, v in node.value if isinstance(k, ScalarNode) and k.value == part]
            if not found:
                break
            line = found[-1][0].start_mark.line + 1
            node = found[-1][1]
        elif (
            isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value)
        ):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


# --- pydantic's errors, in the user's terms ---

_TYPE_WORDS = {
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "bool_type": "must be true or false",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "missing": "required field is missing",
}


def _format_loc(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{_shown(part)}" if out else _shown(part)
    return out


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, UnionType, list, tuple, dict) or get_args(annotation):
        for arg in get_args(annotation):
            if arg is not NoneType and arg is not Ellipsis:
                found = _model_in(arg)
                if found is not None:
                    return found
    return None


def _known_keys(model: type[BaseModel], loc: Iterable[int | str]) -> list[str]:
    """The keys the model accepts at `loc` (a mapping's location), for a suggestion."""
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None:
            return []
        if isinstance(part, int):
            continue
        fields = {f.alias or n: f for n, f in current.model_fields.items()}
        if part not in fields:
            return []
        current = _model_in(fields[part].annotation)
    if current is None:
        return []
    return [f.alias or n for n, f in current.model_fields.items()]


def _first_error(
    exc: ValidationError, prefix: str, model: type[BaseModel] | None = None
) -> tuple[list[int | str], str, str]:
    """(location, field, message) of the error to show: an unknown key first, since a
    misspelt key is usually also the cause of a "missing" one."""
    errors = exc.errors()
    unknown = ("extra_forbidden", "unknown_key")
    err = next((e for e in errors if e["type"] in unknown), errors[0])
    loc: list[int | str] = [
        p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))
    ]
    if err["type"] == "unknown_key":  # the topology's: a key that no field or provider has
        ctx = err.get("ctx") or {}
        loc.append(str(ctx.get("key", "")))
        field = _format_loc([prefix, *loc]) if prefix else _format_loc(loc)
        written = excerpt(ctx.get("key", ""))
        return loc, field, f"unknown field {written}{ctx.get('hint', '')} (check its spelling)"
    field = _format_loc([prefix, *loc]) if prefix else _format_loc(loc)
    msg = " ".join(str(err["msg"]).removeprefix("Value error, ").split())
    kind = err["type"]
    if kind == "extra_forbidden":
        key = loc[-1] if loc else ""
        options = _known_keys(model, loc[:-1]) if model is not None else []
        hint = did_you_mean(str(key), options)
        msg = f"unknown field {excerpt(key)}{hint} (not part of the API; check its spelling)"
    elif kind in ("literal_error", "enum"):
        msg = f"{msg} (got {excerpt(err.get('input'))})"
    elif kind in _TYPE_WORDS:
        msg = _TYPE_WORDS[kind]
        if kind != "missing":
            msg += f", not {excerpt(err.get('input'))}"
    if len(msg) > _MESSAGE_LIMIT:
        # The models' own messages should quote excerpts; this bounds the ones that do not.
        msg = msg[: _MESSAGE_LIMIT - 3] + "..."
    return loc, field, msg


# --- NetworkPolicy, in the shape of its YAML so that errors name the user's fields ---


class _StrictModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class _Ingress(_StrictModel):
    from_: list[Peer] | None = Field(default=None, alias="from")
    ports: list[PolicyPort] | None = None


class _Egress(_StrictModel):
    to: list[Peer] | None = None
    ports: list[PolicyPort] | None = None


class _Spec(_StrictModel):
    pod_selector: LabelSelector = Field(alias="podSelector")
    policy_types: list[PolicyType] | None = Field(default=None, alias="policyTypes")
    ingress: list[_Ingress] | None = None
    egress: list[_Egress] | None = None

    @field_validator("pod_selector", mode="before")
    @classmethod
    def _null_selector(cls, value: Any) -> Any:
        return {} if value is None else value


def _object_keys(doc: Document, *, kind: str, obj: str | None) -> None:
    """Refuse unknown top-level and metadata keys, as kubectl's strict decoding does."""
    for key in doc.body:
        if (
            key not in _OBJECT_KEYS
            and not (key == "items" and kind.endswith("List"))
            and not (key == "specs" and kind in cilium.KINDS)  # Cilium's list of rules
        ):
            raise InputError(
                f"unknown field {excerpt(key)}{did_you_mean(str(key), _OBJECT_KEYS)} "
                "(not part of the API; check its spelling)",
                file=doc.file,
                line=_line_at(doc, [key] if isinstance(key, str) else []),
                obj=obj,
                field=_shown(key),
            )
    meta = doc.body.get("metadata")
    if meta is None:
        return
    if not isinstance(meta, dict):
        raise InputError(
            f"metadata must be a mapping, not {excerpt(meta)}",
            file=doc.file,
            line=_line_at(doc, ["metadata"]),
            obj=obj,
            field="metadata",
        )
    for key in meta:
        if key not in _META_KEYS:
            raise InputError(
                f"unknown field {excerpt(key)}{did_you_mean(str(key), _META_KEYS)} "
                "(not part of the API; check its spelling)",
                file=doc.file,
                line=_line_at(doc, ["metadata", key] if isinstance(key, str) else ["metadata"]),
                obj=obj,
                field=f"metadata.{_shown(key)}",
            )


def _metadata(doc: Document, *, namespaced: bool = True) -> tuple[str, str]:
    """(namespace, name), both checked as the API server checks them."""
    kind = str(doc.body.get("kind"))
    _object_keys(doc, kind=kind, obj=None)
    meta = doc.body.get("metadata") or {}
    name = meta.get("name")
    if name is None or name == "":
        raise InputError(
            f"{kind} without metadata.name (Required value: name or generateName is required)",
            file=doc.file,
            line=_line_at(doc, ["metadata"]),
            field="metadata.name",
        )
    if not isinstance(name, str):
        raise InputError(
            f"metadata.name must be a string, not {excerpt(name)}",
            file=doc.file,
            line=_line_at(doc, ["metadata", "name"]),
            field="metadata.name",
        )
    # Namespaces are DNS labels; NetworkPolicies, pods and workloads DNS subdomains.
    errors = dns1123_subdomain_errors(name) if namespaced else dns1123_label_errors(name)
    if errors:
        raise InputError(
            invalid(name, errors),
            file=doc.file,
            line=_line_at(doc, ["metadata", "name"]),
            obj=f"{kind} {excerpt(name)}",
            field="metadata.name",
        )
    namespace = meta.get("namespace")
    if namespace is None or namespace == "" or not namespaced:
        return "default", name
    if not isinstance(namespace, str):
        message = f"metadata.namespace must be a string, not {excerpt(namespace)}"
    elif errors := dns1123_label_errors(namespace):
        message = invalid(namespace, errors)
    else:
        return namespace, name
    raise InputError(
        message,
        file=doc.file,
        line=_line_at(doc, ["metadata", "namespace"]),
        obj=f"{kind} {name}",
        field="metadata.namespace",
    )


def parse_policy(doc: Document) -> NetworkPolicy:
    namespace, name = _metadata(doc)
    obj = f"NetworkPolicy {namespace}/{name}"
    spec = doc.body.get("spec")
    if not isinstance(spec, dict):
        raise InputError(
            "spec is missing or not a mapping",
            file=doc.file,
            line=_line_at(doc, ["spec"]),
            obj=obj,
            field="spec",
        )
    try:
        parsed = _Spec.model_validate(spec)
    except ValidationError as exc:
        loc, field, msg = _first_error(exc, "spec", _Spec)
        raise InputError(
            msg, file=doc.file, line=_line_at(doc, ["spec", *loc]), obj=obj, field=field
        ) from None
    ingress = tuple(
        PolicyRule(peers=tuple(r.from_) if r.from_ else None, ports=tuple(r.ports or ()))
        for r in parsed.ingress or ()
    )
    egress = tuple(
        PolicyRule(peers=tuple(r.to) if r.to else None, ports=tuple(r.ports or ()))
        for r in parsed.egress or ()
    )
    if parsed.policy_types is None:
        # Kubernetes' defaulting: Ingress always, Egress only when egress rules exist.
        types = {PolicyType.INGRESS} | ({PolicyType.EGRESS} if egress else set())
    else:
        types = set(parsed.policy_types)
    return NetworkPolicy(
        namespace=namespace,
        name=name,
        pod_selector=parsed.pod_selector,
        policy_types=frozenset(types),
        ingress=ingress,
        egress=egress,
    )


def parse_labels(value: Any, *, doc: Document, obj: str, field: str) -> dict[str, str]:
    """An object's labels, refused where the API server refuses them."""
    if value is None:
        return {}
    path = [p for p in field.split(".") if p]
    if not isinstance(value, dict):
        raise InputError(
            f"labels must be a mapping, not {excerpt(value)}",
            file=doc.file,
            line=_line_at(doc, path),
            obj=obj,
            field=field,
        )
    for key, val in value.items():
        line = _line_at(doc, [*path, key] if isinstance(key, str) else path)
        if not isinstance(key, str) or not isinstance(val, str):
            raise InputError(
                'labels must map strings to strings (quote values like "true" or "1"); '
                f"got {excerpt(key)}: {excerpt(val)}",
                file=doc.file,
                line=line,
                obj=obj,
                field=field,
            )
        errors = label_key_errors(key)
        bad: str = key
        if not errors:
            errors, bad = label_value_errors(val), val
        if errors:
            raise InputError(invalid(bad, errors), file=doc.file, line=line, obj=obj, field=field)
    return dict(value)


def _container_port(
    port: Any, *, doc: Document, obj: str, field: str, path: list[str | int]
) -> ContainerPort:
    def fail(message: str, sub: str | None) -> InputError:
        return InputError(
            message,
            file=doc.file,
            line=_line_at(doc, [*path, sub] if sub else path),
            obj=obj,
            field=f"{field}.{sub}" if sub else field,
        )

    if not isinstance(port, dict):
        raise fail(f"a container port must be a mapping, not {excerpt(port)}", None)
    number = port.get("containerPort")
    if number is None:
        raise fail(
            "Required value: a container port needs containerPort (1-65535)", "containerPort"
        )
    if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 65535:
        raise fail(
            f"containerPort {excerpt(number)} is not a port number 1-65535"
            + (" (write it unquoted)" if isinstance(number, str) and number.isdigit() else ""),
            "containerPort",
        )
    proto = port.get("protocol")
    if proto is None:
        proto = "TCP"
    if not isinstance(proto, str) or proto not in {p.value for p in Protocol}:
        raise fail(f"unknown protocol {excerpt(proto)}: use TCP, UDP or SCTP", "protocol")
    port_name = port.get("name")
    if port_name is not None:
        if not isinstance(port_name, str):
            raise fail(f"a port name must be a string, not {excerpt(port_name)}", "name")
        try:
            check_port_name(port_name)
        except ValueError as exc:
            raise fail(str(exc), "name") from None
    return ContainerPort(name=port_name or None, port=number, protocol=Protocol(proto))


def _pod_from_spec(
    doc: Document, *, namespace: str, name: str, kind: str, template: Any, prefix: str
) -> PodInfo | None:
    obj = f"{kind} {namespace}/{name}"
    if template is None:
        # A workload without a template (a kustomize patch, say) names no pods.
        return None
    base: list[str | int] = [p for p in prefix.split(".") if p]
    template = _mapping(template, doc=doc, obj=obj, path=base)
    meta = _mapping(template.get("metadata"), doc=doc, obj=obj, path=[*base, "metadata"])
    spec = _mapping(template.get("spec"), doc=doc, obj=obj, path=[*base, "spec"])
    host_network = spec.get("hostNetwork")
    if host_network is not None and not isinstance(host_network, bool):
        raise InputError(
            f"hostNetwork must be true or false, not {excerpt(host_network)}",
            file=doc.file,
            line=_line_at(doc, [*base, "spec", "hostNetwork"]),
            obj=obj,
            field=f"{prefix}spec.hostNetwork",
        )
    labels = parse_labels(meta.get("labels"), doc=doc, obj=obj, field=f"{prefix}metadata.labels")
    ports: list[ContainerPort] = []
    for group in ("initContainers", "containers"):
        containers = spec.get(group) or []
        if not isinstance(containers, list):
            raise InputError(
                f"{group} must be a list, not {excerpt(containers)}",
                file=doc.file,
                line=_line_at(doc, [*base, "spec", group]),
                obj=obj,
                field=f"{prefix}spec.{group}",
            )
        for ci, container in enumerate(containers):
            container = _mapping(container, doc=doc, obj=obj, path=[*base, "spec", group, ci])
            container_ports = container.get("ports") or []
            if not isinstance(container_ports, list):
                raise InputError(
                    f"ports must be a list, not {excerpt(container_ports)}",
                    file=doc.file,
                    line=_line_at(doc, [*base, "spec", group, ci, "ports"]),
                    obj=obj,
                    field=f"{prefix}spec.{group}[{ci}].ports",
                )
            for pi, port in enumerate(container_ports):
                ports.append(
                    _container_port(
                        port,
                        doc=doc,
                        obj=obj,
                        field=f"{prefix}spec.{group}[{ci}].ports[{pi}]",
                        path=[*base, "spec", group, ci, "ports", pi],
                    )
                )
    account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    if not isinstance(account, str):
        raise InputError(
            f"serviceAccountName must be a string, not {excerpt(account)}",
            file=doc.file,
            line=_line_at(doc, [*base, "spec", "serviceAccountName"]),
            obj=obj,
            field=f"{prefix}spec.serviceAccountName",
        )
    status = doc.body.get("status") if kind == "Pod" else None
    ip = status.get("podIP") if isinstance(status, dict) else None
    return PodInfo(
        namespace=namespace,
        name=name,
        kind=kind,
        labels=labels,
        ports=tuple(ports),
        host_network=host_network is True,
        ip=ip if isinstance(ip, str) else None,
        service_account=account,
    )


def _mapping(value: Any, *, doc: Document, obj: str, path: list[str | int]) -> dict[str, Any]:
    """`value` if a mapping, {} if absent; anything else is an error, not a skipped pod."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    raise InputError(
        f"must be a mapping, not {excerpt(value)}",
        file=doc.file,
        line=_line_at(doc, path),
        obj=obj,
        field=_format_loc(path),
    )


def parse_pod(doc: Document) -> PodInfo | None:
    kind = str(doc.body.get("kind"))
    namespace, name = _metadata(doc)
    obj = f"{kind} {namespace}/{name}"
    spec = _mapping(doc.body.get("spec"), doc=doc, obj=obj, path=["spec"])
    if kind == "Pod":
        return _pod_from_spec(
            doc,
            namespace=namespace,
            name=name,
            kind=kind,
            template={"metadata": doc.body.get("metadata"), "spec": spec},
            prefix="",
        )
    if kind == "CronJob":
        job = _mapping(spec.get("jobTemplate"), doc=doc, obj=obj, path=["spec", "jobTemplate"])
        job_spec = _mapping(job.get("spec"), doc=doc, obj=obj, path=["spec", "jobTemplate", "spec"])
        template = job_spec.get("template")
        return _pod_from_spec(
            doc,
            namespace=namespace,
            name=name,
            kind=kind,
            template=template,
            prefix="spec.jobTemplate.spec.template.",
        )
    return _pod_from_spec(
        doc,
        namespace=namespace,
        name=name,
        kind=kind,
        template=spec.get("template"),
        prefix="spec.template.",
    )


def _kind(doc: Document) -> str:
    kind = doc.body.get("kind")
    if not isinstance(kind, str) or not kind:
        raise InputError(
            "kind is missing or not a string (every Kubernetes object names its kind), "
            f"got {excerpt(kind)}",
            file=doc.file,
            line=_line_at(doc, ["kind"]),
            field="kind",
        )
    return kind


def load_manifests(paths: Iterable[str | Path]) -> Inventory:
    """Read every NetworkPolicy, Namespace and pod (or pod template) under `paths`.

    A path "-" is standard input.
    """
    policies: dict[str, tuple[NetworkPolicy, str]] = {}
    namespaces: dict[str, tuple[dict[str, str], str]] = {}
    pods: dict[tuple[str, str, str], PodInfo] = {}
    foreign: list[ForeignPolicy] = []
    ordered = OrderedPolicies()
    admin_policies: dict[tuple[str, str], TPolicy] = {}
    from nsgsync.sources.calico import CalicoReader, is_calico

    calico = CalicoReader()
    for path in iter_files(paths):
        for doc in read_documents(path):
            kind = _kind(doc)
            if ordered.read(doc, kind):
                continue
            if adminpolicy.compiled(doc.body.get("apiVersion"), kind):
                admin = parse_admin_policy(doc)
                key = (admin.dialect, admin.ref)
                if key in admin_policies:
                    raise InputError(
                        f"{admin.dialect} {admin.ref} is defined twice (also in "
                        f"{admin_policies[key].where})",
                        file=doc.file,
                        line=doc.line,
                        obj=f"{admin.dialect} {admin.ref}",
                    )
                admin_policies[key] = admin
            elif is_calico(doc):
                calico.add(doc)
            elif (found := foreign_policy(doc, where=f"{doc.file}:{doc.line}")) is not None:
                foreign.append(found)
            elif kind == "NetworkPolicy":
                check_policy_api_version(doc)
                policy = parse_policy(doc)
                if policy.ref in policies:
                    raise InputError(
                        f"NetworkPolicy {policy.ref} is defined twice "
                        f"(also in {policies[policy.ref][1]})",
                        file=doc.file,
                        line=doc.line,
                        obj=f"NetworkPolicy {policy.ref}",
                    )
                policies[policy.ref] = (policy, doc.file)
            elif kind == "Namespace":
                _, name = _metadata(doc, namespaced=False)
                meta = doc.body.get("metadata") or {}
                labels = parse_labels(
                    meta.get("labels"), doc=doc, obj=f"Namespace {name}", field="metadata.labels"
                )
                where = f"{doc.file}:{doc.line}"
                if name in namespaces and namespaces[name][0] != labels:
                    # Which labels hold decides what namespaceSelectors match: never guess.
                    raise InputError(
                        f"Namespace {name} is defined twice with different labels "
                        f"(also in {namespaces[name][1]}); keep one definition",
                        file=doc.file,
                        line=doc.line,
                        obj=f"Namespace {name}",
                        field="metadata.labels",
                    )
                namespaces.setdefault(name, (labels, where))
            elif kind == "Pod" or kind == "CronJob" or kind in _TEMPLATE_KINDS:
                pod = parse_pod(doc)
                if pod is not None:
                    pods[(pod.namespace, pod.kind, pod.name)] = pod
    described = {name: labels for name, (labels, _) in namespaces.items()}
    return Inventory.build(
        (p for p, _ in policies.values()),
        described,
        pods.values(),
        foreign=foreign,
        ordered=[*ordered.policies(), *admin_policies.values(), *calico.lowered(described)],
        notes=ordered.notes,
    )


class OrderedPolicies:
    """The policies of the other dialects read so far, lowered, each defined once."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], str] = {}  # (kind, ref) -> where
        self.lowered: list[TPolicy] = []
        self.notes: list[tuple[str, str, str]] = []
        self.absent: list[str] = []  # kinds whose CRD the cluster does not serve

    def read(self, doc: Document, kind: str) -> bool:
        """Read `doc` if it is of a dialect nsgsync compiles; whether it was."""
        api_version = doc.body.get("apiVersion")
        if kind in cilium.KINDS and isinstance(api_version, str):
            if group_of(api_version) != "cilium.io":
                return False
            policy = parse_cilium(doc)
            where = f"{doc.file}:{doc.line}" if doc.line else doc.file
            key = (policy.kind, policy.ref)
            if key in self.seen:
                raise InputError(
                    f"{policy.kind} {policy.ref} is defined twice (also in {self.seen[key]})",
                    file=doc.file,
                    line=doc.line,
                    obj=f"{policy.kind} {policy.ref}",
                )
            self.seen[key] = where
            lowered = cilium.lower(policy, where)
            self.lowered.extend(lowered.policies)
            self.notes.extend((str(n), ref, message) for n, ref, message in lowered.notes)
            return True
        return False

    def policies(self) -> list[TPolicy]:
        return list(self.lowered)

    def note_absent(self) -> None:
        """Say which policy kinds the cluster does not serve (their CRDs are not installed)."""
        if self.absent:
            self.notes.append(
                (
                    str(cilium.Note.CRDS_ABSENT),
                    "",
                    f"the cluster serves no {', '.join(sorted(set(self.absent)))}: its "
                    "CustomResourceDefinitions are not installed, so there are none to compile",
                )
            )


def parse_admin_policy(doc: Document) -> TPolicy:
    """An AdminNetworkPolicy, BaselineAdminNetworkPolicy or ClusterNetworkPolicy, lowered."""
    kind = _kind(doc)
    _, name = _metadata(doc)
    obj = f"{kind} {name}"
    if kind == adminpolicy.BANP and name != adminpolicy.BASELINE_NAME:
        raise InputError(
            f"a BaselineAdminNetworkPolicy must be named {adminpolicy.BASELINE_NAME!r} "
            f"(the cluster has one), not {excerpt(name)}",
            file=doc.file,
            line=_line_at(doc, ["metadata", "name"]),
            obj=obj,
            field="metadata.name",
        )
    spec = doc.body.get("spec")
    if not isinstance(spec, dict):
        raise InputError(
            "spec is missing or not a mapping",
            file=doc.file,
            line=_line_at(doc, ["spec"]),
            obj=obj,
            field="spec",
        )
    model = adminpolicy.SPECS[kind]
    try:
        parsed = model.model_validate(spec)
    except ValidationError as exc:
        loc, field, msg = _first_error(exc, "spec", model)
        raise InputError(
            msg, file=doc.file, line=_line_at(doc, ["spec", *loc]), obj=obj, field=field
        ) from None
    try:
        return adminpolicy.lower(kind, name, parsed, where=f"{doc.file}:{doc.line}")
    except adminpolicy.SpecError as exc:
        path: list[str | int] = ["spec", *exc.path]
        raise InputError(
            str(exc),
            file=doc.file,
            line=_line_at(doc, path),
            obj=obj,
            field=_format_loc(path),
        ) from None


def foreign_policy(doc: Document, *, where: str) -> ForeignPolicy | None:
    """The document as a policy of a kind nsgsync does not compile, if it is one."""
    api_version, kind = doc.body.get("apiVersion"), doc.body.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return None
    effect = classify(api_version, kind)
    if effect is None:
        return None
    meta = doc.body.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    name = meta.get("name") if isinstance(meta.get("name"), str) else "?"
    namespace = meta.get("namespace")
    ref = f"{namespace}/{name}" if isinstance(namespace, str) and namespace else str(name)
    return ForeignPolicy(kind, group_of(api_version), ref, where, effect)


class _CiliumBody(_StrictModel):
    spec: cilium.Rule | None = None
    specs: list[cilium.Rule] | None = None


def parse_cilium(doc: Document) -> cilium.CiliumPolicy:
    """A CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy, checked as its CRD checks it."""
    kind = str(doc.body.get("kind"))
    api_version = doc.body.get("apiVersion")
    clusterwide = kind == cilium.CLUSTERWIDE_KIND
    namespace, name = _metadata(doc)
    ref = name if clusterwide else f"{namespace}/{name}"
    obj = f"{kind} {ref}"
    if api_version != cilium.CILIUM_API_VERSION:
        raise InputError(
            f"apiVersion {excerpt(api_version)} is not one nsgsync reads for kind {kind}",
            file=doc.file,
            line=_line_at(doc, ["apiVersion"]),
            obj=obj,
            field="apiVersion",
            hint=f"Cilium serves {kind} as {cilium.CILIUM_API_VERSION}",
        )
    body = {k: doc.body[k] for k in ("spec", "specs") if k in doc.body}
    try:
        parsed = _CiliumBody.model_validate(body)
    except ValidationError as exc:
        loc, field, msg = _first_error(exc, "", _CiliumBody)
        raise InputError(
            msg, file=doc.file, line=_line_at(doc, loc), obj=obj, field=field
        ) from None
    rules: list[tuple[str, cilium.Rule]] = []
    if parsed.spec is not None:
        rules.append(("spec", parsed.spec))
    rules.extend((f"specs[{i}]", r) for i, r in enumerate(parsed.specs or ()))
    if not rules:
        raise InputError(
            f"{kind} without spec or specs (the API server refuses it: a policy needs rules)",
            file=doc.file,
            line=doc.line,
            obj=obj,
            field="spec",
        )
    for field_name, rule in rules:
        if rule.node_selector is not None and not clusterwide:
            raise InputError(
                "nodeSelector is only for CiliumClusterwideNetworkPolicy (host policies are "
                "cluster-wide)",
                file=doc.file,
                line=_line_at(doc, [*_path(field_name), "nodeSelector"]),
                obj=obj,
                field=f"{field_name}.nodeSelector",
            )
    return cilium.CiliumPolicy(kind, None if clusterwide else namespace, name, tuple(rules))


def _path(field_name: str) -> list[str | int]:
    """`specs[2]` -> ["specs", 2]."""
    if field_name.startswith("specs["):
        return ["specs", int(field_name[6:-1])]
    return [field_name]


def check_policy_api_version(doc: Document) -> None:
    """A NetworkPolicy of another API version is no v1 policy: refuse, never guess."""
    api_version = doc.body.get("apiVersion")
    if api_version is None or api_version == NETWORK_POLICY_V1:
        return
    raise InputError(
        f"apiVersion {excerpt(api_version)} is not one nsgsync reads for kind NetworkPolicy",
        file=doc.file,
        line=doc.line,
        field="apiVersion",
        hint=f"Kubernetes serves NetworkPolicy as {NETWORK_POLICY_V1}; for a CNI's own "
        "policy kinds see docs/semantics.md",
    )


def _topology(doc: Document, where: str) -> Topology:
    try:
        return Topology.model_validate(doc.body)
    except ValidationError as exc:
        loc, field, msg = _first_error(exc, "", Topology)
        cluster = doc.body.get("cluster")
        raise TopologyError(
            msg,
            file=where,
            line=_line_at(doc, loc) if doc.node is not None else None,
            obj=f"Topology {_shown(cluster) if isinstance(cluster, str) else '?'}",
            field=field or None,
        ) from None


def load_topology(path: str | Path) -> Topology:
    docs = list(read_documents(Path(path)))
    if len(docs) != 1:
        raise TopologyError(
            f"expected one Topology document, found {len(docs)}", file=_file_name(Path(path))
        )
    return _topology(docs[0], docs[0].file)


def topology_from_mapping(body: Mapping[str, Any], *, where: str = "<topology>") -> Topology:
    return _topology(Document(where, 0, dict(body)), where)
