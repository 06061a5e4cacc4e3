"""The method package (docs/method.md) as pure functions, checked against hand computations."""
import math

import numpy as np
import pytest
import torch

from anchorlab.method.lens import pool_forms, restricted_logits, rms_norm, top_k_mean
from anchorlab.method.nssd import nssd, subspace
from anchorlab.method.signal import ldar, synchrony
from anchorlab.method.stats import bootstrap_ci


def test_nssd_hand_computed():
    # clean: P(y_p)=0.6, P(y_c)=0.2 -> P̂ = (0.75, 0.25); after: (0.3, 0.3) -> (0.5, 0.5)
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert nssd(0.6, 0.2, 0.3, 0.3) == pytest.approx(kl)
    # the reverse shift (towards y_p) carries a negative sign and its own KL
    kl_rev = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert nssd(0.3, 0.3, 0.6, 0.2) == pytest.approx(-kl_rev)


def test_nssd_zero_when_unchanged_and_scale_free():
    assert nssd(0.4, 0.1, 0.4, 0.1) == 0.0
    # only the subspace matters: scaling both probabilities leaves NSSD unchanged
    assert nssd(0.4, 0.1, 0.2, 0.2) == pytest.approx(nssd(0.04, 0.01, 0.002, 0.002))


def test_subspace_normalises():
    p, c = subspace(np.array([0.2, 0.01]), np.array([0.6, 0.03]))
    np.testing.assert_allclose(p + c, 1.0)
    np.testing.assert_allclose(p, [0.25, 0.25])


def test_ldar_and_synchrony():
    phi_f = np.array([[1.0, 2.0, 3.0, 0.0]])
    phi_c = np.array([[0.0, 3.0, 1.0, 0.0]])
    assert ldar(phi_f, phi_c)[0] == pytest.approx(0.5)  # ties are not wins
    same = synchrony(np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.array([5.0, 2.0]), np.array([4.0, 1.0]))
    assert same.tolist() == [True, False]


def test_bootstrap_ci_brackets_mean_and_is_seeded():
    rng = np.random.default_rng(1)
    x = rng.normal(2.0, 1.0, size=(3, 200))
    ci = bootstrap_ci(x, n_boot=500, seed=7)
    assert ci.shape == (3, 2)
    assert np.all(ci[:, 0] < x.mean(-1)) and np.all(x.mean(-1) < ci[:, 1])
    np.testing.assert_array_equal(ci, bootstrap_ci(x, n_boot=500, seed=7))
    # width shrinks roughly with sqrt(n): 4x the samples -> about half the width
    wide = bootstrap_ci(x[:, :50], n_boot=2000, seed=0)
    narrow = bootstrap_ci(x, n_boot=2000, seed=0)
    ratio = (wide[:, 1] - wide[:, 0]).mean() / (narrow[:, 1] - narrow[:, 0]).mean()
    assert 1.5 < ratio < 2.7
    constant = bootstrap_ci(np.ones(10))
    np.testing.assert_allclose(constant, [1.0, 1.0])


def test_rms_norm_matches_llama_module():
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    norm = LlamaRMSNorm(8, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2.0, 8))
    h = torch.randn(3, 4, 8)
    torch.testing.assert_close(rms_norm(h, norm.weight, 1e-5), norm(h))


def test_restricted_logits_equal_full_unembedding_rows():
    torch.manual_seed(0)
    w = torch.randn(50, 8)
    h = torch.randn(2, 3, 8)
    ids = torch.tensor([[4, 9, 33], [1, 2, 49]])
    got = restricted_logits(h, w[ids])
    full = h @ w.T  # [2, 3, 50]
    torch.testing.assert_close(got, torch.gather(full, 2, ids[:, None, :].expand(2, 3, 3)))


def test_pool_forms_max_and_mean_respect_membership():
    logits = torch.tensor([[[1.0, 5.0, -2.0, 7.0]]])  # [1, P=1, M=4]
    member = torch.tensor([[True, True, False, False]])
    assert pool_forms(logits, member, "max").item() == 5.0
    assert pool_forms(logits, member, "mean").item() == 3.0
    with pytest.raises(ValueError):
        pool_forms(logits, member, "median")


def test_top_k_mean_over_valid_positions():
    pooled = torch.tensor([[3.0, 1.0, 10.0, 2.0]])
    valid = torch.tensor([[True, True, False, True]])  # 10.0 is padding
    assert top_k_mean(pooled, valid, 1).item() == 3.0
    assert top_k_mean(pooled, valid, 2).item() == 2.5
    # k larger than the valid count averages over what is there
    assert top_k_mean(pooled, valid, 4).item() == pytest.approx(2.0)


def test_phi_states_equal_a_brute_force_loop():
    """Φ_m = mean of the top-K over valid positions of max over m's forms of (E_u · norm(h))_y."""
    from anchorlab.method.lens import FinalNorm, PhiInputs, phi_states

    g = torch.Generator().manual_seed(0)
    b, x, p, d, m = 2, 3, 5, 8, 6
    h = torch.randn(b, x, p, d, generator=g)
    rows = torch.randn(b, m, d, generator=g)
    member = torch.zeros(b, 2, m, dtype=torch.bool)
    member[:, 0, :2], member[:, 1, 2:] = True, True
    valid = torch.tensor([[True] * 5, [True, True, False, True, False]])
    norm = FinalNorm(torch.rand(d, generator=g) + 0.5, 1e-6)
    got = phi_states(h, PhiInputs(rows, member, valid, k=2, pool="max", norm=norm))
    for i in range(b):
        for s in range(x):
            for mod in range(2):
                scores = []
                for pos in range(p):
                    if not valid[i, pos]:
                        continue
                    v = h[i, s, pos]
                    normed = norm.weight * (v / torch.sqrt(v.pow(2).mean() + 1e-6))
                    scores.append(max(float(normed @ rows[i, j]) for j in range(m) if member[i, mod, j]))
                top = sorted(scores, reverse=True)[:2]
                assert abs(float(got[i, s, mod]) - sum(top) / len(top)) < 1e-4


def test_head_contributions_sum_to_o_proj_output():
    """Σ_h head^{l,h} W_O^{l,h} = o_proj(z) without bias; each term uses only its head's slice."""
    from anchorlab.method.head_contribution import head_contributions

    g = torch.Generator().manual_seed(1)
    n_heads, hd, d = 4, 3, 12
    z = torch.randn(2, 1, 5, n_heads * hd, generator=g)  # [B, L, P, H*hd]
    w_o = torch.randn(1, d, n_heads * hd, generator=g)  # [L, d, H*hd]
    c = head_contributions(z, w_o, n_heads)  # [B, L, H, P, d]
    torch.testing.assert_close(c.sum(2), z @ w_o[0].T, atol=1e-5, rtol=0)
    for h in range(n_heads):
        part = z[..., h * hd:(h + 1) * hd] @ w_o[0][:, h * hd:(h + 1) * hd].T
        torch.testing.assert_close(c[:, :, h], part, atol=1e-5, rtol=0)


def test_lens_products_stay_fp32_inside_an_autocast_region():
    """NDIF runs a half-precision model's requests under autocast: the lens and head terms must not
    silently drop to bf16 there (compared with a float64 product, bf16 would be off by ~1e-2)."""
    from anchorlab.method.head_contribution import head_contributions

    g = torch.Generator().manual_seed(0)
    h, rows = torch.randn(2, 5, 64, generator=g), torch.randn(2, 7, 64, generator=g)
    z, w_o = torch.randn(2, 3, 5, 64, generator=g), torch.randn(3, 64, 64, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = restricted_logits(h, rows)
        terms = head_contributions(z, w_o, 4)
        assert torch.einsum("...pd,...md->...pm", h, rows).dtype == torch.bfloat16  # what autocast does otherwise
    assert logits.dtype == torch.float32 and terms.dtype == torch.float32
    exact = torch.einsum("...pd,...md->...pm", h.double(), rows.double())
    torch.testing.assert_close(logits.double(), exact, rtol=1e-5, atol=1e-4)
    zh, w = z.double().unflatten(-1, (4, -1)), w_o.double().unflatten(-1, (4, -1))
    torch.testing.assert_close(terms.double(), torch.einsum("...lphk,ldhk->...lhpd", zh, w), rtol=1e-5, atol=1e-4)
