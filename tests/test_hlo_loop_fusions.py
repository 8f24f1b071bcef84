"""The HLO loop diagnostic (experiments/hlo_loop_fusions.py) on a hand-written program: it finds
the while body, counts its kernels and products, and flags the fusion that reads two products'
outputs of one iteration (an earlier step's work recomputed), not the one that reads one."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

from hlo_loop_fusions import loop_report  # noqa: E402

HLO = """\
HloModule jit_step

%gemm_fusion_dot.1_computation (p0: f32[16,1024], p1: f32[1024,4096]) -> f32[16,4096] {
  %p0 = f32[16,1024]{1,0} parameter(0)
  %p1 = f32[1024,4096]{1,0} parameter(1)
  ROOT %dot.1 = f32[16,4096]{1,0} dot(%p0, %p1), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}

%body.7 (arg: (s32[], f32[16,1024])) -> (s32[], f32[16,1024]) {
  %arg = (s32[], f32[16,1024]{1,0}) parameter(0)
  %h = f32[16,1024]{1,0} get-tuple-element(%arg), index=1
  %w = f32[1024,4096]{1,0} constant({...})
  %gemm_fusion_dot.1 = f32[16,4096]{1,0} fusion(%h, %w), kind=kCustom, calls=%gemm_fusion_dot.1_computation
  %loop_cell_fusion.1 = f32[16,1024]{1,0} fusion(%h, %gemm_fusion_dot.1), kind=kLoop, calls=%cell.1
  %gemm_fusion_dot.2 = f32[16,4096]{1,0} fusion(%loop_cell_fusion.1, %w), kind=kCustom, calls=%gemm_fusion_dot.1_computation
  %loop_cell_fusion.2 = f32[16,1024]{1,0} fusion(%h, %gemm_fusion_dot.1, %gemm_fusion_dot.2), kind=kLoop, calls=%cell.2
  ROOT %t = (s32[], f32[16,1024]{1,0}) tuple(%i, %loop_cell_fusion.2)
}

ENTRY %main.9 (x: f32[16,1024]) -> f32[16,1024] {
  %x = f32[16,1024]{1,0} parameter(0)
  %while.3 = (s32[], f32[16,1024]{1,0}) while(%init), condition=%cond.7, body=%body.7, metadata={op_name="while"}
  ROOT %out = f32[16,1024]{1,0} get-tuple-element(%while.3), index=1
}
"""


def test_loop_report_flags_the_recomputing_fusion():
    (loop,) = loop_report(HLO)
    assert loop["body"] == "body.7"
    assert loop["kernels"] == 4 and loop["products"] == 2
    assert loop["max_products_read"] == 2
    assert loop["recomputing_fusions"] == {"loop_cell_fusion.2": 2}


def test_loop_report_passes_one_product_a_fusion():
    clean = HLO.replace("fusion(%h, %gemm_fusion_dot.1, %gemm_fusion_dot.2)", "fusion(%h, %gemm_fusion_dot.2)")
    (loop,) = loop_report(clean)
    assert loop["max_products_read"] == 1 and loop["recomputing_fusions"] == {}
