"""A torch.compile graph pass that runs sibling quantized linears as one op.

A transformer layer's q, k and v projections (and its MLP's gate and up projections) read the same
activations. Frozen to the tiled 2/4-bit layout, each is a ``quanto::linear_qbits_tiled`` call;
at batch 1 (a decode step) each call is a short pass over cold weights with a fork and join of
the CPU threads of its own. The pass rewrites every group of such calls on one ``x`` that is a
single row of bf16 activations (same bits and group size) into one ``quanto::linear_qbits_tiled_cat`` call, whose output holds theirs side
by side (each former output is a slice of it, a view), and which the CPU runs as one pass over
all their rows. Results are identical: each output is computed by the same kernel as before.

Use it through inductor's post-grad hook::

    compiled = torch.compile(model, options=quanto.fusion.inductor_options())

or ``torch._inductor.config.patch(quanto.fusion.inductor_options())`` around the first calls.
Eager models are unchanged (the pass only sees compiled graphs).
"""

import operator
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


def _is_decode_row(x):
    """Whether x is one row of bf16 activations (a decode step): the case the CPU's fused pass
    serves. Larger batches are compute-bound, and run the parts one by one inside the op anyway."""
    val = x.meta.get("val") if isinstance(x, torch.fx.Node) else None
    if not isinstance(val, torch.Tensor) or val.dtype != torch.bfloat16 or val.dim() == 0:
        return False
    rows = 1
    for size in val.shape[:-1]:
        rows *= size
    return isinstance(rows, int) and rows == 1


class SiblingLinearFusion(CustomGraphPass):
    """The pass (an inductor CustomGraphPass: its uuid hashes this file, so cached graphs follow it)."""

    def __call__(self, graph: torch.fx.Graph) -> None:
        single = torch.ops.quanto.linear_qbits_tiled.default
        cat = torch.ops.quanto.linear_qbits_tiled_cat.default
        groups = defaultdict(list)
        for node in graph.nodes:
            if node.op == "call_function" and node.target is single and set(node.kwargs) <= {"bias"}:
                if len(node.args) < 6 or "val" not in node.meta:
                    continue
                args = list(node.args) + [None] * (7 - len(node.args))
                args[6] = node.kwargs.get("bias", args[6])
                x, bits, group_size = args[0], args[4], args[5]
                if _is_decode_row(x):
                    groups[(x, bits, group_size)].append((node, args))
        order = _node_order(graph)
        for (x, bits, group_size), members in groups.items():
            if len(members) < 2:
                continue
            biases = [args[6] for _, args in members]
            if any(b is None for b in biases) and not all(b is None for b in biases):
                continue  # a mix of biased and unbiased weights: left as separate calls
            first = min(order[node] for node, _ in members)
            # The fused call goes where the first member was: every weight it reads must exist by then.
            if not all(_defined_before(args[1:4] + [args[6]], order, first) for _, args in members):
                continue
            first_node = next(node for node, _ in members if order[node] == first)
            vals = [node.meta.get("val") for node, _ in members]
            with graph.inserting_before(first_node):
                fused = graph.call_function(
                    cat,
                    (x, [a[1] for _, a in members], [a[2] for _, a in members], [a[3] for _, a in members], bits,
                     group_size, [] if biases[0] is None else biases))
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
        graph.lint()

    def uuid(self):
        return get_hash_for_files((__file__,))


fuse_sibling_linears = SiblingLinearFusion()


def inductor_options() -> dict:
    """Inductor settings that install the pass (as ``post_grad_custom_post_pass``)."""
    return {"post_grad_custom_post_pass": fuse_sibling_linears}
