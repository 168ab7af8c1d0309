"""The NumPy reference of FlashAttention's interface: every new piece's backward against finite differences,
tiled = dense, packed = one sequence at a time, GQA = K/V repeated by hand, the limits of the score mods,
the SDPA-style core with ``enable_gqa``, and each kind of bad input."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from equivalence_tests.flash_strategies import FlashCase, VarlenCase, flash_cases, varlen_cases
from reference import flash_attention
from reference.attention import attention_backward, attention_forward
from reference.flash_attention import (
    flash_attention_backward,
    flash_attention_forward,
    flash_attention_varlen_backward,
    flash_attention_varlen_forward,
)
from reference.gradcheck import numerical_gradient, numerical_gradients
from reference.masks import causal_mask, document_mask, varlen_mask, window_mask
from reference.score_mods import (
    alibi_bias,
    alibi_slopes_geometric,
    repeat_kv_backward,
    repeat_kv_forward,
    softcap_backward,
    softcap_forward,
)
from triad.tolerance import FD_REL_BOUND, FD_STEP, SAME_MATHS_REL_BOUND, max_rel_err

GRADS = ("dq", "dk", "dv")


def run(arrays: dict[str, np.ndarray], **kwargs) -> dict[str, np.ndarray]:
    """out, lse, dq, dk, dv of flash_attention_forward/backward."""
    out, lse, cache = flash_attention_forward(arrays["q"], arrays["k"], arrays["v"], **kwargs)
    return dict(zip(("out", "lse", *GRADS), (out, lse, *flash_attention_backward(arrays["dout"], cache)),
                    strict=True))


def run_varlen(case: VarlenCase, arrays: dict[str, np.ndarray], **kwargs) -> dict[str, np.ndarray]:
    cu_q, cu_k = case.cu_seqlens()
    out, lse, cache = flash_attention_varlen_forward(arrays["q"], arrays["k"], arrays["v"], cu_q, cu_k, **kwargs)
    return dict(zip(("out", "lse", *GRADS), (out, lse, *flash_attention_varlen_backward(arrays["dout"], cache)),
                    strict=True))


def magnitudes(arrays: dict[str, np.ndarray], softmax_scale: float | None) -> dict[str, float]:
    """The scale of each result, from bounds that hold for any P (rows summing to 1 or 0) and softcap factor <= 1:
    |out| <= max|v|, |dv_j| ~ max|dO| per row, |dS_ij| <= 2 P_ij max|dO| max|v| so |dq_i| <= 2 s max|dO||v||k|,
    and one row's share of dk likewise. A gradient that is 0 by cancellation (one visible key) is judged at it."""
    peak = {name: float(np.max(np.abs(x), initial=0.0)) for name, x in arrays.items()}
    d = arrays["q"].shape[-1]
    scale = 1.0 / np.sqrt(d) if softmax_scale is None else softmax_scale
    ds = 2.0 * scale * peak["dout"] * peak["v"]
    return {"out": peak["v"], "lse": 0.0, "dq": ds * peak["k"], "dk": ds * peak["q"], "dv": peak["dout"]}


def assert_same(actual: dict, expected: dict, scales: dict[str, float], bound: float = SAME_MATHS_REL_BOUND,
                where: str = "") -> None:
    """Every tensor within ``bound`` relative to max(its largest entry, its scale); the LSE's -inf rows exactly
    where expected's are."""
    for name, want in expected.items():
        got = actual[name]
        assert got.shape == want.shape, f"{where}{name}: shape {got.shape} != {want.shape}"
        if name == "lse":
            empty = np.isneginf(want)
            assert np.array_equal(np.isneginf(got), empty), f"{where}lse: -inf rows differ"
            got, want = got[~empty], want[~empty]
        err = max_rel_err(got, want, scales[name])
        assert err <= bound, f"{where}{name}: relative error {err:.3e} > {bound:g}"


# --- tiled = dense ------------------------------------------------------------------------------------------------

@given(case=flash_cases(), block_size=st.sampled_from([1, 2, 3, 5, 8, 16, 64]))
def test_tiled_equals_dense(case: FlashCase, block_size: int) -> None:
    """Block sizes 1, not dividing L, and larger than L; causal, windows, softcap, ALiBi, GQA, Lq != Lk."""
    arrays = case.arrays()
    assert_same(run(arrays, block_size=block_size, **case.kwargs()), run(arrays, **case.kwargs()),
                magnitudes(arrays, case.softmax_scale))


def test_tiled_equals_dense_on_a_long_causal_window_with_everything_on() -> None:
    """Many tiles, some skipped, some unmasked, some partial: Lq < Lk, GQA 3:1, softcap, ALiBi (B, H)."""
    case = FlashCase(B=2, Lq=150, Lk=203, n_kv=2, n_rep=3, d=7, dv=5, causal=True, window=(37, -1), softcap=5.0,
                     alibi="random_bh", softmax_scale=None, seed=3)
    arrays = case.arrays()
    assert_same(run(arrays, block_size=16, **case.kwargs()), run(arrays, **case.kwargs()), magnitudes(arrays, None))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_tiled_equals_dense_whatever_the_threads_the_row_tiles_run_on(monkeypatch: pytest.MonkeyPatch,
                                                                      threads: int) -> None:
    """Row tiles split round robin over threads, each with its share of dK, dV summed at the end: the same
    numbers, and bit for bit the same on every run with the same number of threads."""
    monkeypatch.setattr(flash_attention, "TILE_THREADS", threads)
    case = FlashCase(B=1, Lq=400, Lk=700, n_kv=1, n_rep=2, d=5, dv=3, causal=True, window=(-1, -1), softcap=2.0,
                     alibi="geometric", softmax_scale=None, seed=4)
    arrays = case.arrays()
    tiled = run(arrays, block_size=64, **case.kwargs())
    assert_same(tiled, run(arrays, **case.kwargs()), magnitudes(arrays, None))
    again = run(arrays, block_size=64, **case.kwargs())
    for name in tiled:
        np.testing.assert_array_equal(again[name], tiled[name], err_msg=name)


def test_tiled_never_holds_a_score_matrix() -> None:
    """Memory O((Lq + Lk) d + block_size^2): at L = 2048 the peak stays far below one (L, L) float64 array."""
    rng = np.random.default_rng(0)
    L, d, block_size = 2048, 8, 64
    q, k, v, dout = (rng.standard_normal((1, L, 1, d)) for _ in range(4))
    tracemalloc.start()
    _, _, cache = flash_attention_forward(q, k, v, causal=True, block_size=block_size)
    flash_attention_backward(dout, cache)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < L * L * 8 / 16, f"peak {peak / 2**20:.1f} MiB; one (L, L) array is {L * L * 8 / 2**20:.0f} MiB"


# --- rows that see no key -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("block_size", [None, 2])
def test_rows_without_keys_give_zero_output_zero_gradient_and_lse_minus_inf(block_size: int | None) -> None:
    """causal with Lq > Lk: the first Lq - Lk queries see nothing (bottom-right alignment)."""
    case = FlashCase(B=1, Lq=6, Lk=3, n_kv=1, n_rep=2, d=4, dv=4, causal=True, window=(-1, -1), softcap=0.0,
                     alibi="none", softmax_scale=None, seed=0)
    result = run(case.arrays(), block_size=block_size, causal=True)
    assert np.all(result["out"][:, :3] == 0.0) and np.all(result["dq"][:, :3] == 0.0)
    assert np.all(np.isneginf(result["lse"][:, :, :3])) and np.all(np.isfinite(result["lse"][:, :, 3:]))
    assert np.all(result["out"][:, 3:] != 0.0)


# --- packed = one by one ------------------------------------------------------------------------------------------

@given(case=varlen_cases(), block_size=st.sampled_from([None, None, 1, 3, 16]))
def test_varlen_equals_each_sequence_alone(case: VarlenCase, block_size: int | None) -> None:
    """1-5 sequences, empty ones, length 1, Lq_n != Lk_n: each one alone through flash_attention_forward."""
    arrays = case.arrays()
    packed = run_varlen(case, arrays, block_size=block_size, **case.kwargs())
    cu_q, cu_k = case.cu_seqlens()
    slopes = case.kwargs()["alibi_slopes"]
    for n in range(len(case.lengths_q)):
        rows, keys = slice(cu_q[n], cu_q[n + 1]), slice(cu_k[n], cu_k[n + 1])
        alone = {"q": arrays["q"][None, rows], "k": arrays["k"][None, keys], "v": arrays["v"][None, keys],
                 "dout": arrays["dout"][None, rows]}
        seq_slopes = slopes if slopes is None or slopes.ndim == 1 else slopes[n]
        expected = run(alone, **{**case.kwargs(), "alibi_slopes": seq_slopes})
        got = {"out": packed["out"][None, rows], "lse": packed["lse"][None, :, rows], "dq": packed["dq"][None, rows],
               "dk": packed["dk"][None, keys], "dv": packed["dv"][None, keys]}
        assert_same(got, expected, magnitudes(arrays, None), where=f"sequence {n}: ")


def test_varlen_mask_is_block_diagonal_of_each_sequences_window() -> None:
    cu_q, cu_k = np.array([0, 2, 2, 6], np.int32), np.array([0, 3, 4, 6], np.int32)
    mask = varlen_mask(cu_q, cu_k, causal=True, window_size=(1, -1))
    expected = np.zeros((6, 6), dtype=bool)
    expected[0:2, 0:3] = window_mask(2, 3, 1, 0)
    expected[2:6, 4:6] = window_mask(4, 2, 1, 0)  # sequence 1 has no query; sequence 2 has Lq > Lk
    np.testing.assert_array_equal(mask, expected)
    query_seq, key_seq = np.array([0, 0, 2, 2, 2, 2]), np.array([0, 0, 0, 1, 2, 2])
    np.testing.assert_array_equal(document_mask(cu_q, cu_k), query_seq[:, None] == key_seq[None, :])


# --- GQA, windows, softcap: the limits that must equal simpler attention -----------------------------------------

@given(case=flash_cases(), block_size=st.sampled_from([None, 4]))
def test_gqa_equals_kv_repeated_by_hand(case: FlashCase, block_size: int | None) -> None:
    """Query head h reads K/V head h // (H // Hkv); dK, dV of a K/V head sum over its group."""
    arrays = case.arrays()
    repeated = {**arrays, **{name: np.repeat(arrays[name], case.n_rep, axis=2) for name in ("k", "v")}}
    by_hand = run(repeated, block_size=block_size, **case.kwargs())
    for name in ("dk", "dv"):
        B, Lk, _, width = by_hand[name].shape
        by_hand[name] = by_hand[name].reshape(B, Lk, case.n_kv, case.n_rep, width).sum(axis=3)  # the group sum
    assert_same(run(arrays, block_size=block_size, **case.kwargs()), by_hand, magnitudes(arrays, case.softmax_scale))


@given(case=flash_cases(), block_size=st.sampled_from([None, 3]))
def test_window_at_least_the_lengths_equals_no_window(case: FlashCase, block_size: int | None) -> None:
    arrays, kwargs = case.arrays(), case.kwargs()
    wide = case.Lq + case.Lk
    with_window = run(arrays, block_size=block_size, **{**kwargs, "window_size": (wide, wide)})
    expected = run(arrays, block_size=block_size, **{**kwargs, "window_size": (-1, -1)})
    assert_same(with_window, expected, magnitudes(arrays, case.softmax_scale), bound=0.0)


@given(case=flash_cases(), block_size=st.sampled_from([None, 5]))
def test_softcap_to_infinity_equals_no_softcap(case: FlashCase, block_size: int | None) -> None:
    """c tanh(S / c) = S (1 - S^2 / 3c^2 + ...): at c = 1e12 the difference is far below a rounding."""
    arrays, kwargs = case.arrays(), case.kwargs()
    capped = run(arrays, block_size=block_size, **{**kwargs, "softcap": 1e12})
    assert_same(capped, run(arrays, block_size=block_size, **{**kwargs, "softcap": 0.0}),
                magnitudes(arrays, case.softmax_scale))


def test_softcap_is_applied_before_the_masks() -> None:
    """tanh(-inf) = -1: capping after the mask would give hidden keys the score -softcap, i.e. weight."""
    case = FlashCase(B=1, Lq=4, Lk=4, n_kv=1, n_rep=1, d=3, dv=2, causal=True, window=(-1, -1), softcap=1.0,
                     alibi="none", softmax_scale=None, seed=5)
    arrays = case.arrays()
    out = run({**arrays, "v": np.where(np.arange(4)[None, :, None, None] == 3, 1e6, arrays["v"])},
              causal=True, softcap=1.0)["out"]
    assert np.all(np.abs(out[0, :3]) < 10.0), "a hidden key (v = 1e6) leaked into the output"


@given(case=flash_cases(max_len=12, max_rep=3))
def test_flash_causal_equals_sdpa_style_core_with_bottom_right_mask(case: FlashCase) -> None:
    """flash_attention_forward(causal=True) = attention_forward(causal_mask(.., 'bottom_right'), enable_gqa)."""
    arrays = case.arrays()
    flash = run(arrays, softmax_scale=case.softmax_scale, causal=True)
    to_sdpa = {name: np.ascontiguousarray(np.swapaxes(x, 1, 2)) for name, x in arrays.items()}  # (B, H, L, .)
    out, cache = attention_forward(to_sdpa["q"], to_sdpa["k"], to_sdpa["v"],
                                   causal_mask(case.Lq, case.Lk, "bottom_right"), scale=case.softmax_scale,
                                   enable_gqa=True)
    sdpa = dict(zip(("out", *GRADS), (out, *attention_backward(to_sdpa["dout"], cache)), strict=True))
    assert_same({name: flash[name] for name in sdpa}, {n: np.swapaxes(x, 1, 2) for n, x in sdpa.items()},
                magnitudes(arrays, case.softmax_scale))


# --- the SDPA-style core with enable_gqa --------------------------------------------------------------------------

@pytest.mark.parametrize(("H", "Hkv"), [(6, 2), (4, 1), (3, 3)])
@pytest.mark.parametrize("is_causal", [False, True])
def test_attention_enable_gqa_equals_repeated_kv(H: int, Hkv: int, is_causal: bool) -> None:
    rng = np.random.default_rng(H + Hkv)
    q, dout = rng.standard_normal((2, H, 5, 4)), rng.standard_normal((2, H, 5, 3))
    k, v = rng.standard_normal((2, Hkv, 7, 4)), rng.standard_normal((2, Hkv, 7, 3))
    out, cache = attention_forward(q, k, v, is_causal=is_causal, enable_gqa=True)
    dq, dk, dv = attention_backward(dout, cache)
    r = H // Hkv
    out_rep, cache_rep = attention_forward(q, np.repeat(k, r, 1), np.repeat(v, r, 1), is_causal=is_causal)
    dq_rep, dk_rep, dv_rep = attention_backward(dout, cache_rep)
    np.testing.assert_array_equal(out, out_rep)
    np.testing.assert_array_equal(dq, dq_rep)
    np.testing.assert_allclose(dk, dk_rep.reshape(2, Hkv, r, 7, 4).sum(2), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(dv, dv_rep.reshape(2, Hkv, r, 7, 3).sum(2), rtol=1e-13, atol=1e-15)


def test_attention_without_enable_gqa_refuses_fewer_kv_heads() -> None:
    x, kv = np.ones((1, 4, 3, 2)), np.ones((1, 2, 3, 2))
    with pytest.raises(ValueError, match=r"^k: expected \(B, H, Lk, d_head\)"):
        attention_forward(x, kv, kv)
    with pytest.raises(ValueError, match=r"^k: expected \(B, Hkv, Lk, d_head\) with Hkv dividing H=4"):
        attention_forward(x, np.ones((1, 3, 3, 2)), np.ones((1, 3, 3, 2)), enable_gqa=True)


# --- backward against central finite differences (float64) -------------------------------------------------------

def assert_matches_finite_differences(analytic: dict, forward, inputs: dict, dout: np.ndarray,
                                      scales: dict[str, float]) -> None:
    numeric = numerical_gradients(forward, inputs, dout, h=FD_STEP)
    for name in inputs:
        err = max_rel_err(analytic[name], numeric[name], scales["d" + name])
        assert err <= FD_REL_BOUND, f"d{name}: relative error against finite differences {err:.3e}"


@pytest.mark.parametrize("softcap", [0.7, 3.0, 50.0])
def test_softcap_backward_matches_finite_differences(softcap: float) -> None:
    rng = np.random.default_rng(0)
    scores, dcapped = 3.0 * rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))
    _, cache = softcap_forward(scores, softcap)
    numeric = numerical_gradient(lambda: softcap_forward(scores, softcap)[0], scores, dcapped, h=FD_STEP)
    assert max_rel_err(softcap_backward(dcapped, cache), numeric) <= FD_REL_BOUND


@pytest.mark.parametrize("axis", [1, -2])
def test_repeat_kv_backward_matches_finite_differences(axis: int) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 4, 2))
    dx_rep = rng.standard_normal(repeat_kv_forward(x, 3, axis).shape)
    numeric = numerical_gradient(lambda: repeat_kv_forward(x, 3, axis), x, dx_rep, h=FD_STEP)
    assert max_rel_err(repeat_kv_backward(dx_rep, 3, axis), numeric) <= FD_REL_BOUND


@settings(max_examples=10)
@given(case=flash_cases(max_len=5, max_head_dim=3, max_kv_heads=2, max_rep=2))
def test_flash_backward_matches_finite_differences(case: FlashCase) -> None:
    """GQA, causal, window, softcap, ALiBi, all drawn: the dense backward (the tiled one equals it)."""
    arrays, kwargs = case.arrays(), case.kwargs()
    inputs = {name: arrays[name] for name in ("q", "k", "v")}
    result = run(arrays, **kwargs)
    analytic = {name: result["d" + name] for name in inputs}
    assert_matches_finite_differences(
        analytic, lambda: flash_attention_forward(inputs["q"], inputs["k"], inputs["v"], **kwargs)[0], inputs,
        arrays["dout"], magnitudes(arrays, case.softmax_scale))


@settings(max_examples=10)
@given(case=varlen_cases(max_sequences=3, max_len=3), block_size=st.sampled_from([None, 2]))
def test_flash_varlen_backward_matches_finite_differences(case: VarlenCase, block_size: int | None) -> None:
    arrays, kwargs = case.arrays(), case.kwargs()
    cu_q, cu_k = case.cu_seqlens()
    inputs = {name: arrays[name] for name in ("q", "k", "v")}
    result = run_varlen(case, arrays, block_size=block_size, **kwargs)
    assert_matches_finite_differences(
        {name: result["d" + name] for name in inputs},
        lambda: flash_attention_varlen_forward(inputs["q"], inputs["k"], inputs["v"], cu_q, cu_k,
                                               block_size=block_size, **kwargs)[0],
        inputs, arrays["dout"], magnitudes(arrays, None))


def test_attention_enable_gqa_backward_matches_finite_differences() -> None:
    rng = np.random.default_rng(2)
    inputs = {"q": rng.standard_normal((1, 4, 3, 2)), "k": rng.standard_normal((1, 2, 4, 2)),
              "v": rng.standard_normal((1, 2, 4, 3))}
    dout = rng.standard_normal((1, 4, 3, 3))
    _, cache = attention_forward(**inputs, is_causal=True, enable_gqa=True)
    analytic = dict(zip(inputs, attention_backward(dout, cache), strict=True))
    assert_matches_finite_differences(
        analytic, lambda: attention_forward(**inputs, is_causal=True, enable_gqa=True)[0], inputs, dout,
        magnitudes({**inputs, "dout": dout}, None))


# --- the pieces, on cases small enough to check by eye -----------------------------------------------------------

def test_window_mask_is_bottom_right_aligned() -> None:
    expected = np.array([[0, 1, 1, 1, 0],
                         [0, 0, 1, 1, 1],
                         [0, 0, 0, 1, 1]], dtype=bool)  # Lq = 3, Lk = 5: query i is aligned with key i + 2
    np.testing.assert_array_equal(window_mask(3, 5, 1, 1), expected)
    np.testing.assert_array_equal(window_mask(3, 5, -1, 0), causal_mask(3, 5, "bottom_right"))
    np.testing.assert_array_equal(window_mask(4, 2, -1, -1), np.ones((4, 2), dtype=bool))


def test_alibi_bias_is_minus_slope_times_distance_to_the_aligned_key() -> None:
    slopes = np.array([0.5, 0.25])
    bias = alibi_bias(slopes, 2, 4)  # (1, 2, 2, 4); query i is aligned with key i + 2
    np.testing.assert_array_equal(bias[0, 0], -0.5 * np.array([[2, 1, 0, 1], [3, 2, 1, 0]]))
    assert alibi_bias(np.ones((3, 2)), 2, 4).shape == (3, 2, 2, 4)


def test_geometric_alibi_slopes_follow_the_paper() -> None:
    np.testing.assert_array_equal(alibi_slopes_geometric(8), 2.0 ** -np.arange(1, 9))
    # 6 heads: the 4 slopes of 4 heads, then every other slope of 8 heads (the ALiBi paper's get_slopes)
    np.testing.assert_allclose(alibi_slopes_geometric(6), [2**-2, 2**-4, 2**-6, 2**-8, 2**-1, 2**-3], rtol=1e-15)


# --- bad input: each names the argument and what it expected ------------------------------------------------------

def _batch(H: int = 4, Hkv: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.ones((2, 5, H, 8)), np.ones((2, 6, Hkv, 8)), np.ones((2, 6, Hkv, 8))


BAD_KEYWORDS = [
    ({"window_size": (-2, 0)}, ValueError, r"^window_size: expected a pair \(left, right\) of ints >= -1"),
    ({"window_size": (1.5, 0)}, ValueError, r"^window_size: expected a pair"),
    ({"window_size": 3}, ValueError, r"^window_size: expected a pair"),
    ({"window_size": (1, 2, 3)}, ValueError, r"^window_size: expected a pair"),
    ({"softcap": -1.0}, ValueError, r"^softcap: expected a finite float >= 0"),
    ({"softcap": float("inf")}, ValueError, r"^softcap: expected a finite float >= 0"),
    ({"softcap": float("nan")}, ValueError, r"^softcap: expected a finite float >= 0"),
    ({"alibi_slopes": np.ones(3)}, ValueError, r"^alibi_slopes: expected shape \(4,\) or \(2, 4\)"),
    ({"alibi_slopes": np.ones((1, 2, 4))}, ValueError, r"^alibi_slopes: expected shape"),
    ({"alibi_slopes": np.array([1.0, np.nan, 1.0, 1.0])}, ValueError, r"^alibi_slopes: expected finite slopes"),
    ({"block_size": 0}, ValueError, r"^block_size: expected an int >= 1"),
    ({"block_size": 2.5}, TypeError, r"^block_size: expected an int >= 1"),
    ({"softmax_scale": float("inf")}, ValueError, r"^softmax_scale: expected a finite float"),
]


@pytest.mark.parametrize(("kwargs", "error", "message"), BAD_KEYWORDS)
def test_bad_keywords_are_refused_with_the_argument_named(kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        flash_attention_forward(*_batch(), **kwargs)


def test_kv_heads_not_dividing_query_heads_are_refused() -> None:
    q, k, v = _batch(H=8, Hkv=3)
    with pytest.raises(ValueError, match=r"^k: expected \(B, Lk, Hkv, d\) with Hkv dividing H=8, B=2 and d=8 like q, "
                                         r"got \(2, 6, 3, 8\)"):
        flash_attention_forward(q, k, v)


@pytest.mark.parametrize(("shapes", "message"), [
    (((2, 5, 8), (2, 6, 2, 8), (2, 6, 2, 8)), r"^q: expected \(B, Lq, H, d\) \(4 dims\)"),
    (((2, 5, 4, 8), (2, 6, 2, 7), (2, 6, 2, 8)), r"^k: expected .* d=8 like q"),
    (((2, 5, 4, 8), (3, 6, 2, 8), (3, 6, 2, 8)), r"^k: expected .* B=2"),
    (((2, 5, 4, 8), (2, 6, 2, 8), (2, 7, 2, 8)), r"^v: expected \(B, Lk, Hkv, dv\) with the leading dims \(2, 6, 2\)"),
])
def test_mismatched_dims_are_refused(shapes: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        flash_attention_forward(*(np.ones(s) for s in shapes))


def test_mismatched_or_unsupported_dtypes_are_refused() -> None:
    q, k, v = _batch()
    with pytest.raises(TypeError, match=r"^q, k, v: expected one dtype, got q float64, k float32"):
        flash_attention_forward(q, k.astype(np.float32), v)
    with pytest.raises(TypeError, match=r"^q: expected dtype float32 or float64, got float16"):
        flash_attention_forward(q.astype(np.float16), k, v)
    with pytest.raises(TypeError, match=r"^k: expected a numpy.ndarray, got list"):
        flash_attention_forward(q, k.tolist(), v)


BAD_OFFSETS = [
    (np.array([0.0, 3.0, 5.0]), np.array([0, 4, 6]), TypeError, r"^cu_seqlens_q: expected an int32 \(integer\) array"),
    (np.array([[0, 3, 5]]), np.array([0, 4, 6]), ValueError, r"^cu_seqlens_q: expected a 1-D array"),
    (np.array([1, 3, 5]), np.array([0, 4, 6]), ValueError, r"^cu_seqlens_q: expected offsets starting at 0, got 1"),
    (np.array([0, 3, 2, 5]), np.array([0, 4, 5, 6]), ValueError, r"^cu_seqlens_q: expected non-decreasing offsets"),
    (np.array([0, 3, 4]), np.array([0, 4, 6]), ValueError, r"^cu_seqlens_q: expected the last offset to equal "
                                                             r"the packed length 5, got 4"),
    (np.array([0, 3, 5]), np.array([0, 4, 7]), ValueError, r"^cu_seqlens_k: expected the last offset .* 6, got 7"),
    (np.array([0, 3, 5]), np.array([0, 2, 4, 6]), ValueError, r"^cu_seqlens_k: expected 3 offsets like cu_seqlens_q"),
]


@pytest.mark.parametrize(("cu_q", "cu_k", "error", "message"), BAD_OFFSETS)
def test_bad_cu_seqlens_are_refused(cu_q: np.ndarray, cu_k: np.ndarray, error: type, message: str) -> None:
    q, k, v = np.ones((5, 4, 8)), np.ones((6, 2, 8)), np.ones((6, 2, 8))
    with pytest.raises(error, match=message):
        flash_attention_varlen_forward(q, k, v, cu_q, cu_k)


def test_varlen_alibi_slopes_are_per_sequence() -> None:
    q, k, v = np.ones((5, 4, 8)), np.ones((6, 2, 8)), np.ones((6, 2, 8))
    cu_q, cu_k = np.array([0, 3, 5], np.int32), np.array([0, 4, 6], np.int32)
    with pytest.raises(ValueError, match=r"^alibi_slopes: expected shape \(4,\) or \(2, 4\)"):
        flash_attention_varlen_forward(q, k, v, cu_q, cu_k, alibi_slopes=np.ones((3, 4)))


def test_bad_dout_is_refused() -> None:
    _, _, cache = flash_attention_forward(*_batch())
    with pytest.raises(ValueError, match=r"^dout: expected \(B, Lq, H, dv\) = \(2, 5, 4, 8\) like out"):
        flash_attention_backward(np.ones((2, 5, 2, 8)), cache)


def test_results_are_in_the_input_dtype_and_lse_too() -> None:
    q, k, v = (x.astype(np.float32) for x in _batch())
    for block_size in (None, 2):
        out, lse, cache = flash_attention_forward(q, k, v, causal=True, softcap=2.0, block_size=block_size,
                                                  alibi_slopes=alibi_slopes_geometric(4))
        assert out.dtype == lse.dtype == np.float32
        assert all(g.dtype == np.float32 for g in flash_attention_backward(out, cache))
