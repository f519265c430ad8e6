"""What an export did, layer by layer: the encoding each quantized weight got, and how far the
exported weight is from quanto's dequantized one (0 where the mapping is exact)."""

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List

__all__ = ["ExportRefused", "LayerReport", "ExportReport"]


class ExportRefused(ValueError):
    """The checkpoint holds weights the target format cannot represent exactly (and re-encoding was
    not asked for), or settings it cannot express. The message names each problem and the way out."""


@dataclass
class LayerReport:
    name: str            # module (compressed-tensors) or tensor (GGUF) name
    source: str          # quanto's encoding, e.g. "qint4 g128 zero-point"
    target: str          # the exported encoding, e.g. "pack-quantized int4 group 128 symmetric", "Q4_1"
    max_abs_error: float  # max |exported weight - quanto's dequantized weight|, as the target's readers compute it
    exact: bool          # max_abs_error == 0
    note: str = ""       # why it is not exact (re-encoded, fp16 rounding of the scales, ...)


@dataclass
class ExportReport:
    format: str
    source: str
    output: str
    layers: List[LayerReport] = field(default_factory=list)
    copied_tensors: int = 0   # float tensors written as they are
    notes: List[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        """Every exported weight equals quanto's dequantized weight."""
        return all(layer.exact for layer in self.layers)

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["exact"] = self.exact
        return d

    def summary(self, max_rows: int = 12) -> str:
        inexact = [layer for layer in self.layers if not layer.exact]
        lines = [f"quanto export -> {self.format}: {self.output}",
                 f"  {len(self.layers)} quantized weights mapped, {self.copied_tensors} float tensors copied; "
                 + ("every weight exact (equal to quanto's dequantized weights)" if not inexact else
                    f"{len(self.layers) - len(inexact)} exact, {len(inexact)} not exact:")]
        for layer in sorted(inexact, key=lambda r: -r.max_abs_error)[:max_rows]:
            lines.append(f"    {layer.name}: {layer.source} -> {layer.target}, max |error| {layer.max_abs_error:.3g}"
                         + (f" ({layer.note})" if layer.note else ""))
        if len(inexact) > max_rows:
            lines.append(f"    ... and {len(inexact) - max_rows} more (see the JSON report)")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)
