"""ETGNN for Born effective charges, with MLP or KAN scalar heads; plain torch (no PyG, torch_scatter, sympy).

ETGNN (Zhong, Yu, Gong, Xiang, J. Phys. Chem. Lett. 2023) predicts a per-atom rank-2 tensor from invariant
edge and triplet features of a DimeNet++-style trunk, contracted with unit bond vectors:

    Z*_i = sum_{j -> i} s(m_ji) e_ji (x) e_ji  +  sum_{k -> i -> l} t(m_kil) e_ki (x) e_il

(bonds j -> i into atom i; triplets k -> i -> l whose middle atom is i; e_ab the unit vector from a to b).

s and t are scalar heads (``denseRegression`` in the official code): MLPs, or KANs from ``kan_mlip.nn``.
Distances and angles are invariant and the dyads rotate as R (.) R^T, so the prediction is exactly
O(3)-equivariant: Z*(R x) = R Z*(x) R^T for every orthogonal R (inversion included: a polar rank-2 tensor).

What follows the official code (github.com/Yuxing0926/ETGNN, models/ETGNN/{ETGNN,layers}.py and
models/outputs.py ``Born``), block by block, re-implemented here:

* radial basis: sin(n pi d / r_c) / d times a cosine cutoff (``BesselBasis`` + ``CosineCutoff``, the
  official config's ``rbf_func: bessel``, ``cutoff_func: cos``);
* angular basis: DimeNet's spherical basis, normalised spherical Bessel functions j_l(z_ln d_kj / r_c) times
  Y_l^0 of the angle between the bonds k->j and j->i (``SphericalBasisLayer``);
* embedding block, edge-update interaction blocks (``InteractionBlock``, DimeNet++ with down/up projections
  and residual layers), triplet embedding and triplet interaction blocks (``EmbeddingBlock_triplet``,
  ``InteractionBlock_triplet``), with their glorot-orthogonal initialisation;
* the Born head (``Born``): edge scalars times e_ji (x) e_ji summed onto the bond's target atom, triplet
  scalars times e_kj (x) e_ji summed onto the middle atom j, triplets masked to bonds shorter than
  ``cutoff_triplet``; optional subtraction of the structure's mean tensor (``l_minus_mean``), which makes the
  tensors of a structure sum to zero (acoustic sum rule / charge neutrality);
* triplets k->j->i exclude the back-bond k = i unless k is another periodic image of i.

Where this implementation differs, and why:

* Elements are embedded from a fixed list (the training set's), not a 119-row table: an element the model has
  never seen is an error, not an untrained embedding.
* The angular basis's radial part is cut off at the real distance; the official code applies its cosine cutoff
  to d / r_c (a near-constant factor). The spherical Bessel functions are evaluated by series / recurrence,
  stable in float32 (the sympy closed forms lose all digits for small arguments at high l).
* The scalar heads have no BatchNorm (the official ``denseRegression`` may use one): a structure's charges then
  do not depend on the other structures in its batch, and KAN and MLP heads are compared alike.
* ETGNN's node output block (``OutputBlock``) is not built: the Born head reads edge and triplet features only,
  so it does not contribute to Z*.
* All neighbours within the cutoff are used (the official data pipeline keeps at most ``max_num_nbr`` nearest),
  so the graph does not change discontinuously when neighbours swap rank.

KAN placement (the paper replaced MLPs with KANs): ``"heads"`` (the two scalar heads of the Born output block),
``"edge_update"`` (the residual MLPs of the edge interaction blocks), or ``"all"``.
"""

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from kan_mlip.nn import BASES, KANMLP

HEADS = ("mlp", "gaussian", "bspline", "fourier")
KAN_PLACEMENTS = ("heads", "edge_update", "all")
ACTIVATIONS = {"elu": torch.nn.ELU, "silu": torch.nn.SiLU, "softplus": torch.nn.Softplus, "tanh": torch.nn.Tanh}
MAX_Z = 118


# --------------------------------------------------------------------------------------------------- bases
def spherical_jn(l: int, x: torch.Tensor) -> torch.Tensor:
    """Spherical Bessel function j_l(x) for x > 0, accurate in float32 and float64.

    Power series below x = l + 1 (where upward recurrence cancels catastrophically), upward recurrence from
    j_0, j_1 above it (stable while l < x). Both branches see clamped arguments, so neither overflows."""
    if l == 0:
        return torch.sinc(x / math.pi)
    edge = float(l + 1)
    xs = torch.clamp(x, max=edge)
    # j_l(x) = x^l / (2l+1)!! * sum_k (-x^2/2)^k / (k! (2l+3)(2l+5)...(2l+2k+1))
    term = torch.ones_like(xs)
    total = torch.ones_like(xs)
    h = -0.5 * xs * xs
    for k in range(1, 32):
        term = term * h / float(k * (2 * l + 2 * k + 1))
        total = total + term
    dfact = 1.0
    for n in range(3, 2 * l + 2, 2):
        dfact *= float(n)
    series = total * xs.pow(l) / dfact
    xr = torch.clamp(x, min=edge)
    s, c = torch.sin(xr), torch.cos(xr)
    j_prev = s / xr
    j = s / (xr * xr) - c / xr
    for n in range(1, l):
        j_prev, j = j, (2 * n + 1) / xr * j - j_prev
    return torch.where(x < edge, series, j)


def spherical_bessel_zeros(num_spherical: int, num_radial: int) -> List[List[float]]:
    """The first ``num_radial`` positive zeros z_ln of j_l, l < num_spherical (DimeNet's ``Jn_zeros``).

    Zeros of j_l interlace with those of j_(l-1), so each lies in a bracket of consecutive zeros one order
    lower; bisection in float64."""
    zeros = torch.arange(1, num_radial + num_spherical, dtype=torch.float64) * math.pi  # j_0
    out = [zeros[:num_radial].tolist()]
    for l in range(1, num_spherical):
        lo, hi = zeros[:-1].clone(), zeros[1:].clone()
        f_lo = spherical_jn(l, lo)
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            f_mid = spherical_jn(l, mid)
            same = torch.sign(f_mid) == torch.sign(f_lo)
            lo = torch.where(same, mid, lo)
            f_lo = torch.where(same, f_mid, f_lo)
            hi = torch.where(same, hi, mid)
        zeros = 0.5 * (lo + hi)
        out.append(zeros[:num_radial].tolist())
    return out


def cosine_cutoff(d: torch.Tensor, cutoff: float) -> torch.Tensor:
    return 0.5 * (torch.cos(d * (math.pi / cutoff)) + 1.0) * (d < cutoff).to(d.dtype)


class RadialBasis(torch.nn.Module):
    """sin(n pi d / r_c) / d * f_cut(d), n = 1..num_radial (official ``BesselBasis`` with ``CosineCutoff``)."""

    def __init__(self, num_radial: int, cutoff: float):
        super().__init__()
        self.num_radial = int(num_radial)
        self.cutoff = float(cutoff)

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        n = torch.arange(1, self.num_radial + 1, dtype=d.dtype, device=d.device)
        d1 = d.unsqueeze(-1)
        return torch.sin(n * (math.pi / self.cutoff) * d1) / d1 * cosine_cutoff(d1, self.cutoff)


class SphericalBasis(torch.nn.Module):
    """DimeNet's 2D basis: sqrt(2)/|j_{l+1}(z_ln)| j_l(z_ln d / r_c) f_cut(d) * Y_l^0(angle), (T, L*K)."""

    def __init__(self, num_spherical: int, num_radial: int, cutoff: float):
        super().__init__()
        self.num_spherical, self.num_radial, self.cutoff = int(num_spherical), int(num_radial), float(cutoff)
        zeros = spherical_bessel_zeros(self.num_spherical, self.num_radial)
        norms = []
        for l, zl in enumerate(zeros):
            jl1 = spherical_jn(l + 1, torch.tensor(zl, dtype=torch.float64))
            norms.append((math.sqrt(2.0) / jl1.abs()).tolist())
        # plain floats, not buffers: a float32 model cast to float64 gets the exact float64 values
        self.zeros: List[List[float]] = zeros
        self.norms: List[List[float]] = norms
        self.ylm_norm: List[float] = [math.sqrt((2 * l + 1) / (4 * math.pi)) for l in range(self.num_spherical)]

    def forward(self, d_kj: torch.Tensor, cos_angle: torch.Tensor) -> torch.Tensor:
        x = d_kj / self.cutoff
        fcut = cosine_cutoff(d_kj, self.cutoff).unsqueeze(-1)
        radial: List[torch.Tensor] = []
        for l in range(self.num_spherical):
            z = torch.tensor(self.zeros[l], dtype=d_kj.dtype, device=d_kj.device)
            nrm = torch.tensor(self.norms[l], dtype=d_kj.dtype, device=d_kj.device)
            radial.append(nrm * spherical_jn(l, x.unsqueeze(-1) * z) * fcut)
        # Legendre P_l(cos) by recurrence; Y_l^0 = sqrt((2l+1)/4pi) P_l
        legendre: List[torch.Tensor] = [torch.ones_like(cos_angle)]
        if self.num_spherical > 1:
            legendre.append(cos_angle)
        for n in range(1, self.num_spherical - 1):
            legendre.append(((2 * n + 1) * cos_angle * legendre[n] - n * legendre[n - 1]) / (n + 1))
        parts = [radial[l] * (self.ylm_norm[l] * legendre[l]).unsqueeze(-1) for l in range(self.num_spherical)]
        return torch.cat(parts, dim=-1)


# --------------------------------------------------------------------------------------------------- layers
def glorot_orthogonal_(weight: torch.Tensor, scale: float = 2.0) -> None:
    """PyG's ``glorot_orthogonal``: an orthogonal matrix rescaled to variance scale / (fan_in + fan_out)."""
    with torch.no_grad():
        torch.nn.init.orthogonal_(weight)
        weight.mul_(math.sqrt(scale / ((weight.shape[-2] + weight.shape[-1]) * float(weight.var()))))


def linear(n_in: int, n_out: int, bias: bool = True, init: str = "glorot") -> torch.nn.Linear:
    lin = torch.nn.Linear(n_in, n_out, bias=bias)
    if init == "glorot":
        glorot_orthogonal_(lin.weight)
        if bias:
            torch.nn.init.zeros_(lin.bias)
    return lin


def scatter_sum(src: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    out = torch.zeros((size,) + src.shape[1:], dtype=src.dtype, device=src.device)
    return out.index_add_(0, index, src)


class ResidualLayer(torch.nn.Module):
    """x + act(W2 act(W1 x + b1) + b2)."""

    def __init__(self, width: int, act: str):
        super().__init__()
        self.lin1, self.lin2 = linear(width, width), linear(width, width)
        self.act = ACTIVATIONS[act]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.act(self.lin2(self.act(self.lin1(x))))


class KANResidualLayer(torch.nn.Module):
    """x + KAN(x): the residual MLP of an edge-update block as a two-layer KAN (placement ``edge_update``)."""

    def __init__(self, width: int, basis: str, basis_options: Dict[str, Any]):
        super().__init__()
        self.kan = KANMLP(width, width, 1, width, basis=basis, basis_options=basis_options, zero_at_origin=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.kan(x)


def make_head(kind: str, width: int, n_h: int, act: str, basis_options: Dict[str, Any]) -> torch.nn.Module:
    """The scalar head ``denseRegression(width -> 1, n_h)``: n_h - 1 hidden layers of ``width``, then width -> 1.

    ``kind="mlp"``: Linear + activation per hidden layer; otherwise a KANMLP of the same widths with that basis."""
    if kind == "mlp":
        layers: List[torch.nn.Module] = []
        for _ in range(n_h - 1):
            layers += [torch.nn.Linear(width, width), ACTIVATIONS[act]()]
        layers.append(torch.nn.Linear(width, 1))
        return torch.nn.Sequential(*layers)
    return KANMLP(width, 1, n_h - 1, width if n_h > 1 else None, basis=kind, basis_options=basis_options,
                  zero_at_origin=False)


class EmbeddingBlock(torch.nn.Module):
    """m_ji = act(W [h_i, h_j, act(W_rbf rbf_ji)]): initial edge features from the element embeddings."""

    def __init__(self, num_elements: int, num_radial: int, hidden: int, act: str):
        super().__init__()
        self.emb = torch.nn.Embedding(num_elements, hidden)
        with torch.no_grad():
            self.emb.weight.uniform_(-math.sqrt(3.0), math.sqrt(3.0))
        self.lin_rbf = linear(num_radial, hidden, init="default")
        self.lin = linear(3 * hidden, hidden, init="default")
        self.act = ACTIVATIONS[act]()

    def forward(self, species: torch.Tensor, rbf: torch.Tensor, src: torch.Tensor,
                dst: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        h = self.emb(species)
        r = self.act(self.lin_rbf(rbf))
        return self.act(self.lin(torch.cat([h[dst], h[src], r], dim=-1))), h


class InteractionBlock(torch.nn.Module):
    """DimeNet++ edge update: m_ji <- m_ji + f(m_ji, sum_k m_kj (x) rbf_kj (x) sbf_kji)."""

    def __init__(self, hidden: int, int_emb: int, basis_emb: int, num_spherical: int, num_radial: int,
                 num_before_skip: int, num_after_skip: int, act: str,
                 kan_basis: Optional[str] = None, kan_options: Optional[Dict[str, Any]] = None):
        super().__init__()
        self.lin_rbf1 = linear(num_radial, basis_emb, bias=False)
        self.lin_rbf2 = linear(basis_emb, hidden, bias=False)
        self.lin_sbf1 = linear(num_radial * num_spherical, basis_emb, bias=False)
        self.lin_sbf2 = linear(basis_emb, int_emb, bias=False)
        self.lin_kj = linear(hidden, hidden)
        self.lin_ji = linear(hidden, hidden)
        self.down_projection = linear(hidden, int_emb, bias=False)
        self.up_projection = linear(int_emb, hidden, bias=False)

        def residual() -> torch.nn.Module:
            if kan_basis is None:
                return ResidualLayer(hidden, act)
            return KANResidualLayer(hidden, kan_basis, dict(kan_options or {}))

        self.layers_before_skip = torch.nn.ModuleList([residual() for _ in range(num_before_skip)])
        self.lin = linear(hidden, hidden)
        self.layers_after_skip = torch.nn.ModuleList([residual() for _ in range(num_after_skip)])
        self.act = ACTIVATIONS[act]()

    def forward(self, x: torch.Tensor, rbf: torch.Tensor, sbf: torch.Tensor, idx_kj: torch.Tensor,
                idx_ji: torch.Tensor) -> torch.Tensor:
        x_ji = self.act(self.lin_ji(x))
        x_kj = self.act(self.lin_kj(x)) * self.lin_rbf2(self.lin_rbf1(rbf))
        x_kj = self.act(self.down_projection(x_kj))
        x_kj = x_kj[idx_kj] * self.lin_sbf2(self.lin_sbf1(sbf))
        x_kj = self.up_projection(scatter_sum(x_kj, idx_ji, x.shape[0]))
        h = x_ji + x_kj
        for layer in self.layers_before_skip:
            h = layer(h)
        h = self.act(self.lin(h)) + x
        for layer in self.layers_after_skip:
            h = layer(h)
        return h


class TripletEmbeddingBlock(torch.nn.Module):
    """m_kji = act(W [h_i, h_j, h_k, act(W_rbf rbf_ji), act(W_sbf sbf_kji)])."""

    def __init__(self, num_radial: int, num_spherical: int, hidden: int, triplet: int, act: str):
        super().__init__()
        self.lin_rbf = linear(num_radial, triplet, bias=False, init="default")
        self.lin_sbf = linear(num_radial * num_spherical, triplet, bias=False, init="default")
        self.lin = linear(3 * hidden + 2 * triplet, triplet, bias=False, init="default")
        self.act = ACTIVATIONS[act]()

    def forward(self, rbf: torch.Tensor, sbf: torch.Tensor, h: torch.Tensor, idx_i: torch.Tensor,
                idx_j: torch.Tensor, idx_k: torch.Tensor, idx_ji: torch.Tensor) -> torch.Tensor:
        r = self.act(self.lin_rbf(rbf))
        s = self.act(self.lin_sbf(sbf))
        return self.act(self.lin(torch.cat([h[idx_i], h[idx_j], h[idx_k], r[idx_ji], s], dim=-1)))


class TripletInteractionBlock(torch.nn.Module):
    """Triplet update: the edge update's per-triplet message (before its scatter), projected to the triplet width,
    gated by the ji bond's radial basis and added to the triplet features."""

    def __init__(self, hidden: int, int_emb: int, basis_emb: int, num_spherical: int, num_radial: int,
                 num_before_skip: int, num_after_skip: int, triplet: int, num_residual_triplet: int, act: str):
        super().__init__()
        self.lin_rbf1 = linear(num_radial, basis_emb, bias=False)
        self.lin_rbf2 = linear(basis_emb, hidden, bias=False)
        self.lin_sbf1 = linear(num_radial * num_spherical, basis_emb, bias=False)
        self.lin_sbf2 = linear(basis_emb, int_emb, bias=False)
        self.lin_kj = linear(hidden, hidden)
        self.lin_ji = linear(hidden, hidden)
        self.down_projection = linear(hidden, int_emb, bias=False)
        self.up_projection = linear(int_emb, hidden, bias=False)
        self.layers_before_skip = torch.nn.ModuleList([ResidualLayer(hidden, act) for _ in range(num_before_skip)])
        self.lin = linear(hidden, hidden)
        self.lin_h = linear(hidden, triplet, bias=False)
        self.layers_after_skip = torch.nn.ModuleList([ResidualLayer(triplet, act) for _ in range(num_after_skip)])
        self.linear_triplet = linear(triplet, triplet, bias=False)
        self.lin_rbf3 = linear(num_radial, basis_emb, bias=False)
        self.lin_rbf4 = linear(basis_emb, triplet, bias=False)
        self.residual_triplet = torch.nn.ModuleList([ResidualLayer(triplet, act) for _ in range(num_residual_triplet)])
        self.act = ACTIVATIONS[act]()

    def forward(self, x: torch.Tensor, rbf: torch.Tensor, sbf: torch.Tensor, t: torch.Tensor,
                idx_kj: torch.Tensor, idx_ji: torch.Tensor) -> torch.Tensor:
        x_ji = self.act(self.lin_ji(x))
        x_kj = self.act(self.lin_kj(x)) * self.lin_rbf2(self.lin_rbf1(rbf))
        x_kj = self.act(self.down_projection(x_kj))
        x_kj = self.up_projection(x_kj[idx_kj] * self.lin_sbf2(self.lin_sbf1(sbf)))
        h = x_ji[idx_ji] + x_kj
        for layer in self.layers_before_skip:
            h = layer(h)
        h = self.act(self.lin(h)) + x[idx_ji]
        h = self.lin_h(h)
        for layer in self.layers_after_skip:
            h = layer(h)
        h = h * self.lin_rbf4(self.lin_rbf3(rbf[idx_ji]))
        h = self.act(self.linear_triplet(t)) + h
        for layer in self.residual_triplet:
            h = layer(h)
        return t + h


def build_triplets(edge_index: torch.Tensor, edge_shift: torch.Tensor,
                   num_nodes: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """All bond pairs (k->j, j->i): indices (idx_kj, idx_ji) into the edge list, sorted by idx_ji.

    Edge e = (src, dst, S) is the bond from atom src to the image dst + S (S in cell vectors). The back-bond
    k = i is dropped unless k is another image of i (S_kj + S_ji != 0), as in the official ``triplets``."""
    src, dst = edge_index[0], edge_index[1]
    num_edges = src.shape[0]
    order = torch.sort(dst, stable=True)[1]
    deg_in = torch.bincount(dst, minlength=num_nodes)
    start = torch.cumsum(deg_in, 0) - deg_in  # first incoming edge of each node in `order`
    count = deg_in[src]  # bonds k->j into j = src(ji)
    idx_ji = torch.repeat_interleave(torch.arange(num_edges, device=src.device), count)
    first = torch.cumsum(count, 0) - count
    offset = torch.arange(idx_ji.shape[0], device=src.device) - torch.repeat_interleave(first, count)
    idx_kj = order[torch.repeat_interleave(start[src], count) + offset]
    keep = (src[idx_kj] != dst[idx_ji]) | (edge_shift[idx_kj] + edge_shift[idx_ji] != 0).any(dim=-1)
    return idx_kj[keep], idx_ji[keep]


# --------------------------------------------------------------------------------------------------- model
class ETGNNBorn(torch.nn.Module):
    """ETGNN with the Born-charge output block: (positions, graph) -> per-atom 3x3 tensors.

    Args:
        elements: atomic numbers the model knows (the training set's); others are an error.
        cutoff: bond cutoff r_c in Angstrom (graphs must be built with it).
        cutoff_triplet: triplet terms of the head only for bonds shorter than this (default: ``cutoff``).
        hidden_channels, int_emb_size, basis_emb_size, num_blocks, num_spherical, num_radial,
        num_triplet_features, num_before_skip, num_after_skip, num_residual_triplet, activation: the trunk
            (official names and meaning; the official config is 128, 64, 8, 4, 8, 8, 128, 1, 2, 2, elu).
        head: ``"mlp"`` or a KAN basis (``"gaussian"``, ``"bspline"``, ``"fourier"``).
        head_layers: n_h of the heads (n_h - 1 hidden layers of the input width, official 3).
        kan_options: basis options for the KANs (``kan_mlip.nn.BASIS_OPTIONS``).
        kan_placement: where KANs go when ``head`` is a basis: ``"heads"``, ``"edge_update"`` or ``"all"``.
        sum_rule: subtract each structure's mean tensor, so that sum_i Z*_i = 0 exactly.
    """

    cutoff: float
    cutoff_triplet: float
    sum_rule: bool

    def __init__(self, elements: Sequence[int], cutoff: float = 4.0, cutoff_triplet: Optional[float] = None,
                 hidden_channels: int = 32, int_emb_size: int = 16, basis_emb_size: int = 8, num_blocks: int = 2,
                 num_spherical: int = 5, num_radial: int = 6, num_triplet_features: int = 16,
                 num_before_skip: int = 1, num_after_skip: int = 1, num_residual_triplet: int = 1,
                 activation: str = "elu", head: str = "mlp", head_layers: int = 3,
                 kan_options: Optional[Dict[str, Any]] = None, kan_placement: str = "heads",
                 sum_rule: bool = False):
        super().__init__()
        elements = sorted({int(z) for z in elements})
        if not elements or elements[0] < 1 or elements[-1] > MAX_Z:
            raise ValueError(f"elements must be atomic numbers 1..{MAX_Z}, got {elements}")
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        if kan_placement not in KAN_PLACEMENTS:
            raise ValueError(f"kan_placement must be one of {KAN_PLACEMENTS}, got {kan_placement!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if not cutoff > 0:
            raise ValueError(f"cutoff must be > 0, got {cutoff}")
        if head_layers < 1:
            raise ValueError(f"head_layers must be >= 1, got {head_layers}")
        if head != "mlp" and head not in BASES:
            raise ValueError(f"unknown KAN basis {head!r}")
        kan_options = dict(kan_options or {})
        self.config: Dict[str, Any] = dict(
            elements=elements, cutoff=float(cutoff), cutoff_triplet=cutoff_triplet, hidden_channels=hidden_channels,
            int_emb_size=int_emb_size, basis_emb_size=basis_emb_size, num_blocks=num_blocks,
            num_spherical=num_spherical, num_radial=num_radial, num_triplet_features=num_triplet_features,
            num_before_skip=num_before_skip, num_after_skip=num_after_skip,
            num_residual_triplet=num_residual_triplet, activation=activation, head=head, head_layers=head_layers,
            kan_options=kan_options, kan_placement=kan_placement, sum_rule=bool(sum_rule))
        self.elements: List[int] = elements
        self.cutoff = float(cutoff)
        self.cutoff_triplet = float(cutoff if cutoff_triplet is None else cutoff_triplet)
        self.sum_rule = bool(sum_rule)
        z_to_index = torch.full((MAX_Z + 1,), -1, dtype=torch.long)
        z_to_index[torch.tensor(elements)] = torch.arange(len(elements))
        self.register_buffer("z_to_index", z_to_index)

        kan_heads = head != "mlp" and kan_placement in ("heads", "all")
        kan_update = head != "mlp" and kan_placement in ("edge_update", "all")
        self.rbf = RadialBasis(num_radial, cutoff)
        self.sbf = SphericalBasis(num_spherical, num_radial, cutoff)
        self.emb = EmbeddingBlock(len(elements), num_radial, hidden_channels, activation)
        self.emb_triplet = TripletEmbeddingBlock(num_radial, num_spherical, hidden_channels, num_triplet_features,
                                                 activation)
        self.interactions = torch.nn.ModuleList([
            InteractionBlock(hidden_channels, int_emb_size, basis_emb_size, num_spherical, num_radial,
                             num_before_skip, num_after_skip, activation,
                             head if kan_update else None, kan_options)
            for _ in range(num_blocks)])
        self.triplet_interactions = torch.nn.ModuleList([
            TripletInteractionBlock(hidden_channels, int_emb_size, basis_emb_size, num_spherical, num_radial,
                                    num_before_skip, num_after_skip, num_triplet_features, num_residual_triplet,
                                    activation)
            for _ in range(num_blocks)])
        head_kind = head if kan_heads else "mlp"
        self.edge_head = make_head(head_kind, hidden_channels, head_layers, activation, kan_options)
        self.triplet_head = make_head(head_kind, num_triplet_features, head_layers, activation, kan_options)

    def species(self, numbers: torch.Tensor) -> torch.Tensor:
        """Atomic numbers -> embedding rows; an element outside ``elements`` raises."""
        if numbers.numel() > 0 and (bool((numbers < 0).any()) or bool((numbers >= self.z_to_index.shape[0]).any())):
            raise ValueError("atomic numbers must be in 0..118")
        index = self.z_to_index[numbers]
        if numbers.numel() > 0 and bool((index < 0).any()):
            raise ValueError("structure has an element this model was not trained on (model elements: "
                             + str(self.elements) + ")")
        return index

    def forward(self, pos: torch.Tensor, numbers: torch.Tensor, edge_index: torch.Tensor,
                edge_shift: torch.Tensor, cell: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        """Born effective charges (N, 3, 3).

        pos (N, 3) Angstrom; numbers (N,) atomic numbers; edge_index (2, E) bonds src -> dst; edge_shift (E, 3)
        integer cell offsets of the dst image; cell (B, 3, 3) rows = cell vectors; batch (N,) structure of each
        atom. An atom without bonds gets a zero tensor (then the mean is subtracted with ``sum_rule``)."""
        num_nodes = pos.shape[0]
        src, dst = edge_index[0], edge_index[1]
        species = self.species(numbers)
        shift = torch.einsum("ei,eij->ej", edge_shift.to(pos.dtype), cell[batch[src]])
        vec = pos[dst] + shift - pos[src]  # bond j -> i: r_i - r_j
        dist = torch.linalg.norm(vec, dim=-1)
        unit = vec / dist.unsqueeze(-1)
        idx_kj, idx_ji = build_triplets(edge_index, edge_shift, num_nodes)
        idx_i, idx_j, idx_k = dst[idx_ji], src[idx_ji], src[idx_kj]
        cos_angle = (unit[idx_kj] * unit[idx_ji]).sum(dim=-1)

        rbf = self.rbf(dist)
        sbf = self.sbf(dist[idx_kj], cos_angle)
        x, h = self.emb(species, rbf, src, dst)
        t = self.emb_triplet(rbf, sbf, h, idx_i, idx_j, idx_k, idx_ji)
        for block, triplet_block in zip(self.interactions, self.triplet_interactions):
            x = block(x, rbf, sbf, idx_kj, idx_ji)
            t = triplet_block(x, rbf, sbf, t, idx_kj, idx_ji)

        dyad = unit.unsqueeze(-1) * unit.unsqueeze(-2)  # e_ji (x) e_ji
        z = scatter_sum(self.edge_head(x).unsqueeze(-1) * dyad, dst, num_nodes)
        mask = ((dist[idx_kj] < self.cutoff_triplet) & (dist[idx_ji] < self.cutoff_triplet)).to(pos.dtype)
        cross = unit[idx_kj].unsqueeze(-1) * unit[idx_ji].unsqueeze(-2)  # e_kj (x) e_ji
        z = z + scatter_sum((self.triplet_head(t) * mask.unsqueeze(-1)).unsqueeze(-1) * cross, idx_j, num_nodes)
        if self.sum_rule:
            num_graphs = cell.shape[0]
            total = scatter_sum(z, batch, num_graphs)
            count = torch.bincount(batch, minlength=num_graphs).to(pos.dtype).clamp(min=1.0)
            z = z - (total / count.view(-1, 1, 1))[batch]
        return z


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
