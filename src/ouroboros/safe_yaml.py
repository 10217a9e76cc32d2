"""YAML with a bound on its size once aliases are expanded.

`yaml.safe_load` builds an alias (``*a``) as a reference to the anchored object, so a
500-byte "billion laughs" document loads quickly into a structure that, walked,
copied or printed (as config validation does), holds 10**9 values and never finishes.
`load_yaml` counts the nodes of the document as if every alias were expanded, before
constructing anything, and refuses a document past `MAX_YAML_NODES` or one whose
alias refers to itself (a cycle). Every YAML ouroboros parses goes through it.
"""

from __future__ import annotations

import yaml

from ouroboros.errors import UserError

MAX_YAML_NODES = 100_000  # a study config has a few hundred


def _children(node: yaml.Node) -> list:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def expanded_size(root: yaml.Node, limit: int, where: str) -> int:
    """The number of nodes under `root` with every alias expanded; a UserError past
    `limit`, or for an alias inside its own anchor. Iterative and memoised: the cost
    follows the document as written, not as expanded."""
    sizes: dict[int, int] = {}
    ancestors: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            ancestors.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in _children(node))
            if sizes[key] > limit:
                raise UserError(f"{where}: over {limit:,} YAML values once aliases are expanded; "
                                "write the values out or use fewer aliases")
            continue
        if key in sizes:
            continue
        ancestors.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in ancestors:
                raise UserError(f"{where}: an alias inside its own anchor (a recursive structure); remove it")
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


class BoundedSafeLoader(yaml.SafeLoader):
    """A SafeLoader that refuses documents past `MAX_YAML_NODES` expanded nodes."""

    where = "the YAML document"
    max_nodes = MAX_YAML_NODES

    def compose_document(self):
        node = super().compose_document()
        if node is not None:
            expanded_size(node, self.max_nodes, self.where)
        return node


def load_yaml(text: str | bytes, where: str = "the YAML document", max_nodes: int = MAX_YAML_NODES):
    """`yaml.safe_load(text)` with the expanded-size bound; `where` names the source in
    errors. YAML errors (yaml.YAMLError, RecursionError) pass through for the caller."""
    loader = BoundedSafeLoader(text)
    loader.where, loader.max_nodes = where, max_nodes
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
