"""The box-stack mapping: known vectors give known boxes, colours, padding and scaling."""

import numpy as np
import pytest
from plotly.colors import sample_colorscale

from interp_app.panels.boxes import (
    GAP,
    MIN_SIZE,
    PAD,
    Scale,
    box_sizes,
    colours,
    padded,
    scale_for,
    stack_height,
    stack_trace,
)
from tests.dash_client import decode_array


def test_four_numbers_a_box_and_padding():
    v = np.arange(10, dtype=float)  # 10 numbers -> 3 boxes, the last padded with two PADs
    boxes = padded(v)
    assert boxes.shape == (3, 4)
    np.testing.assert_array_equal(boxes[0], [0, 1, 2, 3])
    np.testing.assert_array_equal(boxes[2], [8, 9, PAD, PAD])
    assert padded(np.ones(20)).shape == (5, 4)  # the article's 20 numbers: 5 boxes


def test_known_vector_gives_known_sizes_and_colours():
    # sizes over 0..2, colours over -1..1 (the figure's scale)
    scale = Scale(lo=0.0, hi=2.0, clo=-1.0, chi=1.0)
    sizes, colour = box_sizes(np.array([0.0, 1.0, 2.0, -1.0, 2.0, 0.0, 1.0, 1.0]), scale)
    mid = MIN_SIZE + (1 - MIN_SIZE) * 0.5
    np.testing.assert_allclose(sizes, [[MIN_SIZE, mid, 1.0], [1.0, MIN_SIZE, mid]])
    np.testing.assert_allclose(colour, [0.0, 1.0])
    assert colours(colour) == sample_colorscale("Magma", [0.0, 1.0])
    assert colours([0.0])[0] == "rgb(0, 0, 4)"  # magma's darkest end


def test_scale_spans_every_vector_of_the_figure():
    a, b = np.array([1.0, 2.0, 3.0, 10.0]), np.array([-3.0, 0.0, 5.0, -10.0])
    scale = scale_for([a, b])
    assert scale == Scale(lo=-3.0, hi=5.0, clo=-10.0, chi=10.0)
    # the same number gets the same box size in either stack: stacks compare
    assert box_sizes(a, scale)[0][0, 2] == box_sizes(np.array([9, 9, 3.0, 0]), scale)[0][0, 2]
    # a constant figure draws full boxes and the middle colour instead of dividing by zero
    sizes, colour = box_sizes(np.ones(4), scale_for([np.ones(4)]))
    np.testing.assert_allclose(sizes, 1.0)
    np.testing.assert_allclose(colour, 0.5)


def test_stack_mesh_geometry_and_hover():
    scale = Scale(0.0, 1.0, 0.0, 1.0)
    v = np.array([1.0, 1.0, 1.0, 0.25, 0.0, 0.0, 0.0, 1.0, 0.5])  # 3 boxes, 3 PADs
    trace = stack_trace(v, scale, x=2.0, y=3.0, label="'chili'")
    assert trace["type"] == "mesh3d"
    xs, ys, zs, i, j, k = (decode_array(trace[a]) for a in "xyzijk")
    assert len(xs) == 3 * 8 and len(i) == 3 * 12
    assert max(i.max(), j.max(), k.max()) == 3 * 8 - 1
    # box 0: unit box centred on (2, 3) from z = 0 to 1; box 1 starts above it after a gap
    np.testing.assert_allclose([xs[:8].min(), xs[:8].max()], [1.5, 2.5])
    np.testing.assert_allclose([ys[:8].min(), ys[:8].max()], [2.5, 3.5])
    np.testing.assert_allclose([zs[:8].min(), zs[:8].max()], [0.0, 1.0])
    np.testing.assert_allclose(zs[8:16].min(), 1.0 + GAP)
    np.testing.assert_allclose(zs.max(), stack_height(v, scale), atol=1e-5)
    np.testing.assert_allclose(decode_array(trace["intensity"])[:8], 0.25)
    assert "h +1.000" in trace["hovertext"][0] and "c +0.250" in trace["hovertext"][0]
    assert "'chili'" in trace["hovertemplate"]
    assert "dims 8–8 padded" in trace["hovertext"][-1]


@pytest.mark.parametrize("d", [1, 3, 4, 5, 20, 21])
def test_any_width_makes_ceil_d_over_4_boxes(d):
    trace = stack_trace(np.linspace(-1, 1, d), scale_for([np.linspace(-1, 1, d)]), 0, 0, "v")
    assert len(decode_array(trace["x"])) == 8 * -(-d // 4)
