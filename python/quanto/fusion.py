"""A torch.compile graph pass that runs sibling quantized linears as one op.

A transformer layer's q, k and v projections (and its MLP's gate and up projections) read the same
activations. Frozen, each is a ``quanto::linear_qbits_tiled`` call (2/4-bit, tiled layout) or a
``quanto::linear_qbytes`` one (int8 / float8), or with dynamic int8 activations a
``quanto::linear_w4a8_tiled`` one; at batch 1 (a decode step) each call is a short pass over cold
weights with a fork and join of the CPU threads of its own. The pass rewrites every group of such
calls on one ``x`` that is a single row of activations (bf16 for the tiled layout; the same int8
codes and scale for W4A8; same bits and group size) into one ``quanto::linear_qbits_tiled_cat`` /
``linear_qbytes_cat`` / ``linear_w4a8_tiled_cat`` call, whose output holds theirs side by side
(each former output is a slice of it, a view), and which the CPU runs as one pass over all their
rows. Results are identical: each output is computed
by the same kernel as before.

Use it through inductor's post-grad hook::

    compiled = torch.compile(model, options=quanto.fusion.inductor_options())

or ``torch._inductor.config.patch(quanto.fusion.inductor_options())`` around the first calls.
Eager models are unchanged (the pass only sees compiled graphs).
"""

import math
from collections import defaultdict

import torch
from torch._inductor.custom_graph_pass import CustomGraphPass, get_hash_for_files

__all__ = ["SiblingLinearFusion", "fuse_sibling_linears", "inductor_options"]


def _node_order(graph):
    return {node: i for i, node in enumerate(graph.nodes)}


def _defined_before(value, order, limit):
    """Whether every graph node in ``value`` (a node, a list of them, or a constant) precedes ``limit``."""
    if isinstance(value, torch.fx.Node):
        return order[value] < limit
    if isinstance(value, (list, tuple)):
        return all(_defined_before(v, order, limit) for v in value)
    return True


def _rows_and_dtype(x):
    """(rows, dtype) of x's fake value: rows is the product of all but its last dim."""
    val = x.meta.get("val") if isinstance(x, torch.fx.Node) else None
    if not isinstance(val, torch.Tensor) or val.dim() == 0:
        return None, None
    if not all(isinstance(size, int) for size in val.shape):
        return None, None  # symbolic sizes: left alone (the pass adds no guards)
    return math.prod(val.shape[:-1]), val.dtype


class _Family:
    """A single-weight op and its *_cat form: where its weight tensors, static arguments and bias
    sit among the single op's arguments, and which activations the CPU's fused pass serves (one
    row: a decode step; larger batches are compute-bound and run the parts one by one anyway)."""

    def __init__(self, single, cat, shared, weights, static, bias, trailing, dtypes):
        # Positions in the single op's arguments: ``shared`` (x first) and ``static`` the calls of
        # a group have in common, around the ``weights``; then ``bias`` and the common ``trailing``
        # ones. The *_cat op takes them in that order, the weights and biases as lists.
        self.single, self.cat, self.shared, self.weights, self.static, self.bias, self.trailing, self.dtypes = (
            single, cat, shared, weights, static, bias, trailing, dtypes)

    def args(self, node):
        """The single call's arguments (bias included) when the pass can rewrite it, else None."""
        if node.op != "call_function" or node.target is not self.single or not set(node.kwargs) <= {"bias"}:
            return None
        needed = max((self.bias, *self.trailing))
        if len(node.args) < needed or "val" not in node.meta:
            return None
        args = list(node.args) + [None] * (needed + 1 - len(node.args))
        args[self.bias] = node.kwargs.get("bias", args[self.bias])
        rows, dtype = _rows_and_dtype(args[0])
        return args if rows == 1 and dtype in self.dtypes else None

    def key(self, args):
        """What the calls of one fused group share: x, the static arguments."""
        return tuple(args[i] for i in (*self.shared, *self.static, *self.trailing))

    def cat_args(self, key, members, biases):
        """The *_cat call's arguments for a group's members ((node, args) pairs) and their biases."""
        lead, static = key[:len(self.shared)], key[len(self.shared):len(self.shared) + len(self.static)]
        trailing = key[len(self.shared) + len(self.static):]
        lists = ([args[i] for _, args in members] for i in self.weights)
        return (*lead, *lists, *static, [] if biases[0] is None else biases, *trailing)


def _families():
    q = torch.ops.quanto
    return (
        # linear_qbits_tiled(x, w_tiled, w_scale, w_shift, bits, group_size, bias): the fused pass
        # reads bf16 activations (the float ones run part by part).
        _Family(q.linear_qbits_tiled.default, q.linear_qbits_tiled_cat.default, (0,), (1, 2, 3), (4, 5), 6, (),
                (torch.bfloat16,)),
        # linear_qbytes(x, w_data, w_scale, bias): any float activations (converted once).
        _Family(q.linear_qbytes.default, q.linear_qbytes_cat.default, (0,), (1, 2), (), 3, (),
                (torch.float32, torch.bfloat16, torch.float16)),
        # linear_w4a8_tiled(x_data, x_scale, w_tiled, w_scale, w_shift, group_size, bias, out_dtype):
        # dynamic int8 activations (one quantize_per_token call on x serves every part).
        _Family(q.linear_w4a8_tiled.default, q.linear_w4a8_tiled_cat.default, (0, 1), (2, 3, 4), (5,), 6, (7,),
                (torch.int8,)),
    )


class SiblingLinearFusion(CustomGraphPass):
    """The pass (an inductor CustomGraphPass: its uuid hashes this file, so cached graphs follow it)."""

    def __call__(self, graph: torch.fx.Graph) -> None:
        for family in _families():
            self._fuse(graph, family)
        graph.lint()

    @staticmethod
    def _fuse(graph, family):
        groups = defaultdict(list)
        for node in graph.nodes:
            args = family.args(node)
            if args is not None:
                groups[family.key(args)].append((node, args))
        order = _node_order(graph)
        for key, members in groups.items():
            if len(members) < 2:
                continue
            biases = [args[family.bias] for _, args in members]
            if any(b is None for b in biases) and not all(b is None for b in biases):
                continue  # a mix of biased and unbiased weights: left as separate calls
            first = min(order[node] for node, _ in members)
            # The fused call goes where the first member was: every weight it reads must exist by then.
            tensors = [[args[i] for i in family.weights] + [args[family.bias]] for _, args in members]
            if not all(_defined_before(t, order, first) for t in tensors):
                continue
            first_node = next(node for node, _ in members if order[node] == first)
            vals = [node.meta["val"] for node, _ in members]
            with graph.inserting_before(first_node):
                fused = graph.call_function(family.cat, family.cat_args(key, members, biases))
                fused.meta["val"] = torch.cat(vals, dim=-1)  # fake tensors: the fused output and its slices
                start = 0
                for (node, _), val in zip(members, vals):
                    width = val.shape[-1]
                    part = graph.call_function(torch.ops.aten.slice.Tensor, (fused, -1, start, start + width))
                    part.meta["val"] = torch.ops.aten.slice.Tensor(fused.meta["val"], -1, start, start + width)
                    start += width
                    node.replace_all_uses_with(part)
            for node, _ in members:
                graph.erase_node(node)
            order = _node_order(graph)

    def uuid(self):
        return get_hash_for_files((__file__,))


fuse_sibling_linears = SiblingLinearFusion()


def inductor_options() -> dict:
    """Inductor settings that install the pass (as ``post_grad_custom_post_pass``)."""
    return {"post_grad_custom_post_pass": fuse_sibling_linears}
