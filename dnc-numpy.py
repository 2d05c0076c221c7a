"""Char-level Differentiable Neural Computer in NumPy, forward and BPTT by hand.

    python dnc-numpy.py                        # train on data/alice29.txt
    python dnc-numpy.py my.txt --memory 16 --width 16 --reads 4 --save dnc.npz
    python dnc-numpy.py --load dnc.npz --sample 500 --prime "Alice "
    python dnc-numpy.py --gradcheck            # every parameter; dnc-debug.py checks each op
    python dnc-numpy.py --task copy --bits 6 --length 1-10 --save copy.npz
    python dnc-numpy.py --load copy.npz --eval-lengths 5,10,20,40 --memory 48
    python dnc-numpy.py --load copy.npz --show  # one episode: inputs, outputs, the memory at work
    python dnc-numpy.py --task series-copy --controller feedforward --mask --dealloc  # free and reuse

Graves et al. 2016, "Hybrid computing using a neural network with dynamic external
memory" (Nature 538:471), Methods, with an LSTM controller (the cell of lstm-numpy.py)
or, with --controller feedforward, the feedforward one of the paper's Extended Data
figures (ReLU layers with no state of their own, §1.1), R read heads and one write head:
content addressing with strengths, dynamic allocation from usage and free gates, erase
and write, the temporal link matrix and precedence, forward / backward / content read
modes; and four options, each off by default so that the plain DNC stays the paper's main
model: three refinements of Csordas & Schmidhuber (ICLR 2019), --sharpen, the forward and
backward weightings made to sum to 1 and sharpened (§4.1); --mask, each content lookup
through a mask over the word's entries from the interface (§4.2); --dealloc, the memory
freed by the free gates erased too (§4.3); and --sparse-links K, the paper's sparse link
matrix, K links per row kept as column indices and values, at O(N K) a step instead of
O(N^2), so that N can be thousands (§4.4). Equation names and
section numbers (§) refer to docs/dnc.md, which explains and derives every forward and
backward formula used here. Shapes follow the legend in
common.py; every op below is vectorised over the batch B and the heads R, with no Python
loop over rows, heads or slots (the allocation's backward solves its recursion along the
free list by recursive doubling, log2 N rounds; the plain loop over the slots stands
beside it as its reference). memory_step_forward runs the ops in the paper's order (§4);
at large N, memory_forward runs it on a few batch rows at a time, so that a block's
(rows, N, N) links stay in the processor's cache (§11); up to N 128 at batch 32 that is
one call on the whole batch.

Per time step t (§4):
    controller   h_t = LSTM([x_t; r_{t-1}], h_{t-1})   or   h_t = min(relu([x_t; r_{t-1}] W + b), 20)
                 xi_t = h_t W_xi + b_xi
    memory       read and write M with the parts of xi_t            -> r_t (B, R, W)
    output       logits_t = h_t W_y + r_t W_ry + b_y
The whole state (M, u, w^w, p, L, w^r, r, and the LSTM controller's h, c) is carried from
window to window (and starts from zero at every episode of a memory task). With
--dropout p, the controller's h is masked between its layers and before the output layer,
never on its recurrent connections, the interface or the reads.

Training (the loop is train.py's train()): each iteration runs forward over a window of
S characters of B cursors into the text, the mean cross-entropy of the next character,
and backward through the window (truncated BPTT: the whole state above is carried into
the next window, the gradient is not); then one clip of all the gradients by their
global norm and the optimiser's update (common.py: Adagrad, or --optim adam / rmsprop).
On a memory task every batch row is one episode, and the state starts from zero at each;
in its bit form (the default) x_t is a row of bit and flag channels, read by a product
x_t W_x rather than a row gather, the output one sigmoid per answer bit and the loss the
bit-wise sigmoid cross-entropy (data/tasks.py).
"""
import functools
from typing import NamedTuple

import numpy as np

import common
import train

lstm = common.load_script("lstm-numpy.py")  # the controller cell, shared, not a copy

KIND = "dnc"
EPS = 1e-6  # inside the cosine's square roots (§7.1), in the usage clamp (§3) and the sharpening (§4.1)
MASK_MIN = 0.1  # --mask (§4.2): every mask entry at least this, as Csordas & Schmidhuber's recall runs floor it


# ----------------------------------------------------------------------------------
# Interface vector (§2): xi (B, RW + 3W + 5R + 3), + 2R with --sharpen, + W(R + 1) with --mask
# -> the named parts, squashed


def interface_size(R, W, sharpen=False, mask=False):
    """The length of xi (§2): R read keys of W, R read strengths, a write key of W, a write
    strength, erase and write vectors of W, R free gates, two gates, 3 modes per head; with
    --sharpen (§4.1) a forward and a backward sharpness per head after them; with --mask
    (§4.2) a mask of W for each read key and for the write key after those."""
    return R * W + 3 * W + 5 * R + 3 + (2 * R if sharpen else 0) + (W * (R + 1) if mask else 0)


def oneplus(x):
    """1 + softplus(x), written so that exp never overflows (§7.3). Its derivative is sigmoid(x)."""
    return 1 + np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


@functools.lru_cache(maxsize=None)
def interface_layout(R, W, sharpen=False, mask=False):
    """Where each part sits in xi, in the paper's order (§2), then the sharpnesses of
    --sharpen (§4.1), then the masks of --mask (§4.2): name -> slice."""
    sizes = [("read_keys", R * W), ("read_strengths", R), ("write_key", W), ("write_strength", 1),
             ("erase", W), ("write_vector", W), ("free_gates", R), ("alloc_gate", 1), ("write_gate", 1),
             ("read_modes", 3 * R)]
    if sharpen:
        sizes += [("forward_sharpness", R), ("backward_sharpness", R)]
    if mask:
        sizes += [("read_masks", R * W), ("write_mask", W)]
    ends = np.cumsum([n for _, n in sizes])
    return {name: slice(end - n, end) for (name, n), end in zip(sizes, ends)}


class InterfaceCache(NamedTuple):
    xi: np.ndarray  # (B, RW+3W+5R+3) the raw interface vector (+2R with --sharpen, +W(R+1) with --mask)
    at: dict  # interface_layout: name -> slice of xi
    parts: dict  # the squashed parts, by name


def interface_forward(xi, R, W, sharpen=False, mask=False):
    """xi (B, interface_size(R, W, sharpen, mask)) -> dict of parts with their paper names, cache

    Squashing (§2): keys and write vector none, strengths oneplus (>= 1), erase vector and
    the free, allocation and write gates sigmoid, read modes a softmax over each head's 3;
    with sharpen, the forward and backward sharpnesses oneplus (>= 1, §4.1); with mask, the
    masks MASK_MIN + (1 - MASK_MIN) sigmoid, in [0.1, 1] (§4.2). An xi of another width is
    refused, so that sharpness or mask entries are never silently dropped."""
    if xi.shape[1] != interface_size(R, W, sharpen, mask):
        raise ValueError(f"xi has {xi.shape[1]} entries; R={R}, W={W}, sharpen={sharpen}, mask={mask} "
                         f"make {interface_size(R, W, sharpen, mask)}")
    B, at = xi.shape[0], interface_layout(R, W, sharpen, mask)
    parts = {
        "read_keys": xi[:, at["read_keys"]].reshape(B, R, W),  # k^{r,i}                  (B, R, W)
        "read_strengths": oneplus(xi[:, at["read_strengths"]]),  # beta^{r,i} >= 1        (B, R)
        "write_key": xi[:, at["write_key"]].reshape(B, 1, W),  # k^w                       (B, 1, W)
        "write_strength": oneplus(xi[:, at["write_strength"]]),  # beta^w >= 1            (B, 1)
        "erase": common.sigmoid(xi[:, at["erase"]]),  # e in (0, 1)^W                        (B, W)
        "write_vector": xi[:, at["write_vector"]],  # v                                      (B, W)
        "free_gates": common.sigmoid(xi[:, at["free_gates"]]),  # f^i                        (B, R)
        "alloc_gate": common.sigmoid(xi[:, at["alloc_gate"]]),  # g^a                        (B, 1)
        "write_gate": common.sigmoid(xi[:, at["write_gate"]]),  # g^w                        (B, 1)
        "read_modes": common.softmax(xi[:, at["read_modes"]].reshape(B, R, 3)),  # (backward, content, forward)
    }
    if sharpen:  # --sharpen (§4.1): one sharpness per head for each direction
        parts["forward_sharpness"] = oneplus(xi[:, at["forward_sharpness"]])  # s^{f,i} >= 1     (B, R)
        parts["backward_sharpness"] = oneplus(xi[:, at["backward_sharpness"]])  # s^{b,i} >= 1   (B, R)
    if mask:  # --mask (§4.2): one mask per key, floored at MASK_MIN
        parts["read_masks"] = mask_squash(xi[:, at["read_masks"]]).reshape(B, R, W)  # m^{r,i}  (B, R, W)
        parts["write_mask"] = mask_squash(xi[:, at["write_mask"]]).reshape(B, 1, W)  # m^w      (B, 1, W)
    return parts, InterfaceCache(xi, at, parts)


def mask_squash(x):
    """A mask of --mask (§4.2): MASK_MIN + (1 - MASK_MIN) sigmoid(x), in [MASK_MIN, 1]."""
    return MASK_MIN + (1 - MASK_MIN) * common.sigmoid(x)


def interface_backward(d, cache):
    """d: dict of adjoints of the parts (missing = zero) -> dxi, the shape of the cache's xi

    Each slice through its squashing's VJP (§5): unchanged for none, d * sigmoid(x) for
    oneplus, d * s (1 - s) for a sigmoid s, d * (1 - MASK_MIN) s (1 - s) for a mask,
    m * (dm - <dm, m>) for each head's modes m."""
    xi, at, parts = cache
    B = xi.shape[0]
    dxi = np.zeros_like(xi)
    for name in ("read_keys", "write_key", "write_vector"):  # no squashing
        if name in d:
            dxi[:, at[name]] = d[name].reshape(B, -1)
    for name in ("read_strengths", "write_strength", "forward_sharpness", "backward_sharpness"):  # oneplus' = sigmoid
        if name in d:
            dxi[:, at[name]] = d[name] * common.sigmoid(xi[:, at[name]])
    for name in ("erase", "free_gates", "alloc_gate", "write_gate"):  # sigmoid' = s (1 - s)
        if name in d:
            s = parts[name]
            dxi[:, at[name]] = d[name] * s * (1 - s)
    for name in ("read_masks", "write_mask"):  # --mask: the floored sigmoid
        if name in d:
            s = common.sigmoid(xi[:, at[name]])
            dxi[:, at[name]] = d[name].reshape(B, -1) * (1 - MASK_MIN) * s * (1 - s)
    if "read_modes" in d:  # softmax VJP over the 3 modes of each head
        m, dm = parts["read_modes"], d["read_modes"]
        dxi[:, at["read_modes"]] = (m * (dm - np.einsum("brk,brk->br", dm, m)[:, :, None])).reshape(B, -1)
    return dxi


# ----------------------------------------------------------------------------------
# Memory operations, each a forward / backward pair (§3, §4, §5)


def content_forward(M, k, beta):
    """Content weighting C(M, k, beta) (§3): cosine similarity sharpened by the strength.

    M (B, N, W), k (B, K, W) one key per head, beta (B, K) -> C (B, K, N), cache
    a_n = sqrt(|M_n|^2 + eps), b = sqrt(|k|^2 + eps), D = M_n.k / (a_n b), C = softmax(beta D)
    """
    a = np.sqrt(np.einsum("bnw,bnw->bn", M, M) + EPS)  # (B, N)
    b = np.sqrt(np.einsum("bkw,bkw->bk", k, k) + EPS)  # (B, K)
    D = (k @ M.transpose(0, 2, 1)) / (b[:, :, None] * a[:, None, :])  # (B, K, N) cosine
    C = common.softmax(beta[:, :, None] * D)  # over the N slots
    return C, (M, k, beta, a, b, D, C)


def content_backward(dC, cache):
    """dC (B, K, N) -> dM (B, N, W), dk (B, K, W), dbeta (B, K)

    VJP (§5): dz = C (dC - <dC, C>), dbeta = sum_n dz_n D_n, dD = beta dz, s_n = dD_n / (a_n b);
    dM_n = sum_keys (s_n k - dD_n D_n M_n / a_n^2), dk = sum_n s_n M_n - (sum_n dD_n D_n) k / b^2."""
    M, k, beta, a, b, D, C = cache
    dz = C * (dC - np.einsum("bkn,bkn->bk", dC, C)[:, :, None])  # softmax VJP
    dbeta = np.einsum("bkn,bkn->bk", dz, D)
    dD = beta[:, :, None] * dz  # (B, K, N)
    s = dD / (b[:, :, None] * a[:, None, :])
    dDD = dD * D
    # dD_n/dM_n = k / (a_n b) - D_n M_n / a_n^2 ;  dD_n/dk = M_n / (a_n b) - D_n k / b^2
    dM = s.transpose(0, 2, 1) @ k - (dDD.sum(1) / (a * a))[:, :, None] * M
    dk = s @ M - (dDD.sum(2) / (b * b))[:, :, None] * k
    return dM, dk, dbeta


class MaskedContentCache(NamedTuple):
    M: np.ndarray  # (B, N, W) the memory, unmasked
    k: np.ndarray  # (B, K, W) the keys, unmasked
    m: np.ndarray  # (B, K, W) each key's mask
    content: tuple  # content_forward's cache, with the B K masked memories as its batch


def masked_content_forward(M, k, beta, m):
    """Masked content weighting C(M * m, k * m, beta) (§4.2, --mask; Csordas & Schmidhuber 2019):
    the cosine of each key with each slot over the entries its mask lets through.

    M (B, N, W), k (B, K, W), beta (B, K), m (B, K, W) in (0, 1]^W -> C (B, K, N), cache
    Each key sees the memory through its own mask, so the masked memories M * m^i are (B, K, N, W);
    content_forward runs on them as a batch of B K memories with one key each."""
    B, K, W = k.shape
    Mm = M[:, None] * m[:, :, None, :]  # (B, K, N, W) memory as key i sees it
    C, c = content_forward(Mm.reshape(B * K, -1, W), (k * m).reshape(B * K, 1, W), beta.reshape(B * K, 1))
    return C.reshape(B, K, -1), MaskedContentCache(M, k, m, c)


def masked_content_backward(dC, cache):
    """dC (B, K, N) -> dM (B, N, W), dk (B, K, W), dbeta (B, K), dm (B, K, W)

    VJP (§4.2): content_backward gives the adjoints of the masked memories dMm^i (B, K, N, W)
    and keys dkm^i; then through the elementwise products M * m^i and k^i * m^i:
    dM = sum_i dMm^i * m^i, dk^i = dkm^i * m^i, dm^i = sum_n dMm^i_n * M_n + dkm^i * k^i."""
    M, k, m, c = cache
    B, K, W = k.shape
    dMm, dkm, dbeta = content_backward(dC.reshape(B * K, 1, -1), c)
    dMm = dMm.reshape(B, K, -1, W)  # (B, K, N, W)
    dkm = dkm.reshape(B, K, W)
    dM = np.einsum("bknw,bkw->bnw", dMm, m)
    dm = np.einsum("bknw,bnw->bkw", dMm, M) + dkm * k
    return dM, dkm * m, dbeta.reshape(B, K), dm


def retention_forward(free, wr_prev):
    """Retention psi = prod_i (1 - f^i w^{r,i}_{t-1}) (§3).
    free (B, R), wr_prev (B, R, N) -> psi (B, N)"""
    q = 1 - free[:, :, None] * wr_prev  # (B, R, N)
    return q.prod(1), (free, wr_prev, q)


def retention_backward(dpsi, cache):
    """dpsi (B, N) -> dfree (B, R), dwr_prev (B, R, N)

    VJP (§5), with q_i = 1 - f^i w^{r,i}_{t-1}: dq_i = dpsi prod_{j != i} q_j, then
    dfree^i = -<dq_i, w^{r,i}_{t-1}> and dw^{r,i}_{t-1} = -f^i dq_i. The leave-one-out products
    prod_{j != i} q_j are products over the heads with q_i replaced by 1, never
    psi / q_i, which is 0/0 when a head freed a slot completely (§7.6)."""
    free, wr_prev, q = cache
    R = q.shape[1]
    others = np.repeat(q[:, None], R, axis=1)  # (B, R, R, N): row i holds every q_j
    others[:, np.arange(R), np.arange(R)] = 1  # ... but q_i
    dq = dpsi[:, None, :] * others.prod(2)  # (B, R, N)
    return -np.einsum("brn,brn->br", dq, wr_prev), -free[:, :, None] * dq


def usage_forward(u_prev, ww_prev, psi):
    """Usage u_t = (u_{t-1} + w^w_{t-1} - u_{t-1} w^w_{t-1}) psi_t, all (B, N) (§3)."""
    u_tilde = u_prev + ww_prev - u_prev * ww_prev
    return u_tilde * psi, (u_prev, ww_prev, psi, u_tilde)


def usage_backward(du, cache, stop_write_grad=False):
    """du (B, N) -> du_prev, dww_prev, dpsi (B, N)

    VJP (§5), with u~ = u_{t-1} + w^w_{t-1} - u_{t-1} w^w_{t-1}: du_prev = du psi (1 - w^w_{t-1}),
    dww_prev = du psi (1 - u_{t-1}), dpsi = du u~. stop_write_grad reproduces
    deepmind/dnc's tf.stop_gradient on w^w_{t-1} (§8): dww_prev is then zero."""
    u_prev, ww_prev, psi, u_tilde = cache
    dup = du * psi
    dww_prev = np.zeros_like(du) if stop_write_grad else dup * (1 - u_prev)
    return dup * (1 - ww_prev), dww_prev, du * u_tilde


class AllocationCache(NamedTuple):
    rows: np.ndarray  # (B, 1) the batch rows, to index with phi
    phi: np.ndarray  # (B, N) the free list: slot indices, least used first
    us: np.ndarray  # (B, N) the clamped usages in free-list order
    P: np.ndarray  # (B, N) their exclusive cumulative products


def allocation_forward(u):
    """Allocation weighting a_t (§3): slots sorted by usage, least used first (the free
    list phi); a[phi_j] = (1 - u[phi_j]) prod_{i<j} u[phi_i].  u (B, N) -> a (B, N)

    Usage is first clamped to eps + (1 - eps) u, and the sort is stable, so ties (all
    zero usage at the start) break by slot index. The order phi is a constant of the
    backward, as in the paper."""
    uc = EPS + (1 - EPS) * u
    phi = np.argsort(uc, axis=-1, kind="stable")  # (B, N) the free list
    rows = np.arange(u.shape[0])[:, None]
    us = uc[rows, phi]  # sorted usages
    P = np.ones_like(us)
    P[:, 1:] = np.cumprod(us[:, :-1], axis=-1)  # exclusive cumulative product
    a = np.empty_like(u)
    a[rows, phi] = (1 - us) * P
    return a, AllocationCache(rows, phi, us, P)


def allocation_backward(da, cache):
    """da (B, N) -> du (B, N), division-free (§5, §7.5).

    VJP for a fixed free list phi, in free-list order (u_k the clamped usages sorted, P_k
    their exclusive cumulative product): du_k = P_k (T_k - da_k), times the clamp's
    (1 - eps), with T_k = sum_{j>k} da_j (1 - u_j) prod_{k<i<j} u_i. The reference is the
    plain reverse loop over the slots, allocation_backward_loop:
        T = 0;  for k = N-1, ..., 0:  du_k = P_k (T - da_k);  T = da_k (1 - u_k) + u_k T
    Here that recurrence, T_k = c_k + m_k T_{k+1} with c_k = da_{k+1} (1 - u_{k+1}) and
    m_k = u_{k+1}, is solved for every k at once by recursive doubling: substituting
    T_{k+d} = c_{k+d} + m_{k+d} T_{k+2d} gives T_k = (c_k + m_k c_{k+d}) + (m_k m_{k+d}) T_{k+2d},
    so log2(N) rounds over the whole batch; once d >= N, T = c. Against the loop: the training
    step 1.01x faster at N 16, 1.09x at N 64, 1.22x at N 256; the op 5x at N 1024 and 4096."""
    rows, phi, us, P = cache
    N = us.shape[1]
    das = da[rows, phi]  # (B, N) the adjoints in free-list order
    c = np.zeros_like(us)  # (B, N) c_k = da_{k+1} (1 - u_{k+1}); 0 for the last slot
    c[:, :-1] = das[:, 1:] * (1 - us[:, 1:])
    m = np.zeros_like(us)  # (B, N) m_k = u_{k+1}; 0 for the last slot: T is 0 past it
    m[:, :-1] = us[:, 1:]
    d = 1
    while d < N:  # now T_k = c_k + m_k T_{k+d}, and m_k = 0 wherever k + d is past the end
        c[:, :-d] = c[:, :-d] + m[:, :-d] * c[:, d:]
        m[:, :-d] = m[:, :-d] * m[:, d:]
        d *= 2
    du = np.empty_like(da)
    du[rows, phi] = P * (c - das) * (1 - EPS)  # back to slot order, through the clamp
    return du


def allocation_backward_loop(da, cache):
    """The reference for allocation_backward, the same VJP as the plain reverse loop of its
    docstring: N Python steps, each over the whole batch (dnc-debug.py and the tests check
    that the two agree)."""
    rows, phi, us, P = cache
    das = da[rows, phi]  # (B, N) the adjoints in free-list order
    dus = np.empty_like(us)
    T = np.zeros_like(us[:, 0])  # (B,) nothing past the last slot
    for k in reversed(range(us.shape[1])):
        dus[:, k] = P[:, k] * (T - das[:, k])
        T = das[:, k] * (1 - us[:, k]) + us[:, k] * T  # T_{k-1}
    du = np.empty_like(da)
    du[rows, phi] = dus * (1 - EPS)  # back to slot order, through the clamp
    return du


class WriteWeightingCache(NamedTuple):
    alloc: np.ndarray  # (B, N) allocation weighting a_t
    cw: np.ndarray  # (B, N) write content weighting c^w_t
    ga: np.ndarray  # (B, 1) allocation gate
    gw: np.ndarray  # (B, 1) write gate
    mix: np.ndarray  # (B, N) g^a a + (1 - g^a) c^w


def write_weighting_forward(alloc, cw, ga, gw):
    """Write weighting w^w = g^w (g^a a + (1 - g^a) c^w) (§4, step 6).
    alloc, cw (B, N), ga, gw (B, 1) -> ww (B, N)"""
    mix = ga * alloc + (1 - ga) * cw
    return gw * mix, WriteWeightingCache(alloc, cw, ga, gw, mix)


def write_weighting_backward(dww, cache):
    """dww (B, N) -> dalloc, dcw (B, N), dga, dgw (B, 1)

    VJP (§5), with mix = g^a a + (1 - g^a) c^w: dgw = <dww, mix>, dga = g^w <dww, a - c^w>,
    dalloc = g^w g^a dww, dcw = g^w (1 - g^a) dww."""
    alloc, cw, ga, gw, mix = cache
    dmix = gw * dww
    dgw = np.einsum("bn,bn->b", dww, mix)[:, None]
    dga = np.einsum("bn,bn->b", dmix, alloc - cw)[:, None]
    return ga * dmix, (1 - ga) * dmix, dga, dgw


def write_forward(M_prev, ww, e, v):
    """Erase and write: M_t = M_{t-1} (1 - w^w e^T) + w^w v^T (§4, step 7).
    M_prev (B, N, W), ww (B, N), e, v (B, W) -> M (B, N, W)"""
    keep = 1 - ww[:, :, None] * e[:, None, :]  # (B, N, W)
    return M_prev * keep + ww[:, :, None] * v[:, None, :], (M_prev, ww, e, v, keep)


def write_backward(dM, cache):
    """dM (B, N, W) -> dM_prev (B, N, W), dww (B, N), de, dv (B, W)

    VJP (§5): dM_prev = dM (1 - w^w e^T), dww_n = sum_j dM[n, j] (v_j - M_prev[n, j] e_j),
    de = -(dM M_prev)^T w^w, dv = dM^T w^w (dM M_prev elementwise)."""
    M_prev, ww, e, v, keep = cache
    dMM = dM * M_prev
    dww = np.einsum("bnw,bw->bn", dM, v) - np.einsum("bnw,bw->bn", dMM, e)
    de = -np.einsum("bn,bnw->bw", ww, dMM)
    dv = np.einsum("bn,bnw->bw", ww, dM)
    return dM * keep, dww, de, dv


def dealloc_write_forward(M_prev, ww, e, v, psi):
    """Erase, de-allocate and write (§4.3, --dealloc; Csordas & Schmidhuber 2019): what the
    retention frees is erased too, M_t = M_{t-1} * (psi_t 1^T) * (1 - w^w e^T) + w^w v^T.
    M_prev (B, N, W), ww, psi (B, N), e, v (B, W) -> M (B, N, W)"""
    erase = 1 - ww[:, :, None] * e[:, None, :]  # (B, N, W)
    keep = psi[:, :, None] * erase  # (B, N, W)
    return M_prev * keep + ww[:, :, None] * v[:, None, :], (M_prev, ww, e, v, psi, erase, keep)


def dealloc_write_backward(dM, cache):
    """dM (B, N, W) -> dM_prev (B, N, W), dww (B, N), de, dv (B, W), dpsi (B, N)

    VJP (§4.3): write_backward's with M_{t-1} * psi in place of M_{t-1}: dM_prev = dM * keep,
    dww_n = sum_j dM[n, j] (v_j - psi_n M_prev[n, j] e_j), de = -(dM M_prev)^T (psi w^w),
    dv = dM^T w^w; and the retention's adjoint dpsi_n = sum_j dM[n, j] M_prev[n, j] (1 - w_n e_j)."""
    M_prev, ww, e, v, psi, erase, keep = cache
    dMM = dM * M_prev
    dww = np.einsum("bnw,bw->bn", dM, v) - psi * np.einsum("bnw,bw->bn", dMM, e)
    de = -np.einsum("bn,bnw->bw", psi * ww, dMM)
    dv = np.einsum("bn,bnw->bw", ww, dM)
    dpsi = np.einsum("bnw,bnw->bn", dMM, erase)
    return dM * keep, dww, de, dv, dpsi


def link_forward(L_prev, ww, p_prev):
    """Temporal link matrix L_t[i, j] = (1 - w_i - w_j) L_{t-1}[i, j] + w_i p_{t-1}[j], zero
    diagonal (§4, step 8; w = w^w_t). L_prev (B, N, N), ww, p_prev (B, N) -> L (B, N, N).
    Uses p_{t-1}. The cache keeps only the inputs, not the (B, N, N) factor 1 - w_i - w_j:
    the backward recomputes it (the cache of a window at N 256 is 337 MiB instead of 593)."""
    N = ww.shape[1]
    L = (1 - ww[:, :, None] - ww[:, None, :]) * L_prev + ww[:, :, None] * p_prev[:, None, :]
    L[:, np.arange(N), np.arange(N)] = 0  # L_t[i, i] = 0
    return L, (L_prev, ww, p_prev)


def link_backward(dL, cache):
    """dL (B, N, N) -> dL_prev (B, N, N), dww, dp_prev (B, N). The incoming adjoint is
    masked first: no gradient flows through the zeroed diagonal (§7.8).

    VJP (§5), with G = dL (1 - I): dL_prev = G (1 - w_i - w_j), dp_prev = G^T w,
    dww_i = (G p_prev)_i - sum_j (G L_prev)[i, j] - sum_j (G L_prev)[j, i] (G L_prev elementwise)."""
    L_prev, ww, p_prev = cache
    N = ww.shape[1]
    G = dL * (1 - np.eye(N, dtype=dL.dtype))  # (B, N, N)
    dww = ((G @ p_prev[:, :, None])[:, :, 0] - np.einsum("bij,bij->bi", G, L_prev)
           - np.einsum("bij,bij->bj", G, L_prev))
    dp_prev = (ww[:, None, :] @ G)[:, 0]
    return G * (1 - ww[:, :, None] - ww[:, None, :]), dww, dp_prev


def precedence_forward(p_prev, ww):
    """Precedence p_t = (1 - sum_n w^w_t[n]) p_{t-1} + w^w_t, all (B, N) (§4, step 9)."""
    keep = 1 - ww.sum(-1, keepdims=True)  # (B, 1)
    return keep * p_prev + ww, (p_prev, keep)


def precedence_backward(dp, cache):
    """dp (B, N) -> dp_prev, dww (B, N)

    VJP (§5): dp_prev = (1 - sum_n w^w_t[n]) dp, dww = dp - <dp, p_prev> (each w_n also scales
    the decay of the whole of p_{t-1})."""
    p_prev, keep = cache
    return keep * dp, dp - np.einsum("bn,bn->b", dp, p_prev)[:, None]


class DirectionalCache(NamedTuple):
    L: np.ndarray  # (B, N, N) the link matrix L_t
    wr_prev: np.ndarray  # (B, R, N) the read weightings w^r_{t-1}


def directional_forward(L, wr_prev):
    """Forward and backward weightings f^i = L w^{r,i}_{t-1}, b^i = L^T w^{r,i}_{t-1} (§4, step 10).
    L (B, N, N), wr_prev (B, R, N) -> fwd, bwd (B, R, N)"""
    return wr_prev @ L.transpose(0, 2, 1), wr_prev @ L, DirectionalCache(L, wr_prev)


def directional_backward(dfwd, dbwd, cache):
    """dfwd, dbwd (B, R, N) -> dL (B, N, N), dwr_prev (B, R, N)

    VJP (§5), with w^i = w^{r,i}_{t-1}: dL = sum_i (df^i (w^i)^T + w^i (db^i)^T),
    dw^i = L^T df^i + L db^i."""
    L, wr_prev = cache
    dL = dfwd.transpose(0, 2, 1) @ wr_prev + wr_prev.transpose(0, 2, 1) @ dbwd  # sums over the heads
    return dL, dfwd @ L + dbwd @ L.transpose(0, 2, 1)


class SharpenCache(NamedTuple):
    shifted: np.ndarray  # (B, R, N) d + eps
    log_d: np.ndarray  # (B, R, N) log(d + eps)
    s: np.ndarray  # (B, R) the sharpness of each head
    sharp: np.ndarray  # (B, R, N) the sharpened weighting S(d, s)


def sharpen_forward(d, s):
    """Sharpened weighting S(d, s)_n = (d_n + eps)^s / sum_m (d_m + eps)^s (§4.1, --sharpen;
    Csordas & Schmidhuber 2019), for a forward or a backward weighting d of each head: made to
    sum to 1 again, and raised to the power s >= 1, which favours its largest slots.
    d (B, R, N) >= 0, s (B, R) -> S (B, R, N), cache
    Computed as softmax_n(s log(d_n + eps)), which is the same function (exp(s log x) = x^s),
    with no power that can underflow to 0/0 or overflow (§7.11)."""
    shifted = d + EPS
    log_d = np.log(shifted)  # (B, R, N)
    sharp = common.softmax(s[:, :, None] * log_d)  # over the N slots
    return sharp, SharpenCache(shifted, log_d, s, sharp)


def sharpen_backward(dsharp, cache):
    """dsharp (B, R, N) -> dd (B, R, N), ds (B, R)

    VJP (§5), with z = s log(d + eps) and S = softmax(z): dz = S (dS - <dS, S>), then
    ds = <dz, log(d + eps)> and dd = s dz / (d + eps)."""
    shifted, log_d, s, sharp = cache
    dz = sharp * (dsharp - np.einsum("brn,brn->br", dsharp, sharp)[:, :, None])  # softmax VJP
    return s[:, :, None] * dz / shifted, np.einsum("brn,brn->br", dz, log_d)


def read_weighting_forward(modes, bwd, cr, fwd):
    """Read weighting w^{r,i} = pi^i[0] b^i + pi^i[1] c^{r,i} + pi^i[2] f^i (§4, step 12).
    modes (B, R, 3), bwd, cr, fwd (B, R, N) -> wr (B, R, N)"""
    cand = np.stack([bwd, cr, fwd], axis=2)  # (B, R, 3, N) the three candidates
    return np.einsum("brk,brkn->brn", modes, cand), (modes, cand)


def read_weighting_backward(dwr, cache):
    """dwr (B, R, N) -> dmodes (B, R, 3), dbwd, dcr, dfwd (B, R, N)

    VJP (§5), with cand = (b^i, c^{r,i}, f^i): dpi^i[k] = <dw^{r,i}, cand_k>,
    dcand_k = pi^i[k] dw^{r,i}."""
    modes, cand = cache
    dcand = modes[:, :, :, None] * dwr[:, :, None, :]  # (B, R, 3, N)
    return np.einsum("brn,brkn->brk", dwr, cand), dcand[:, :, 0], dcand[:, :, 1], dcand[:, :, 2]


def read_forward(M, wr):
    """Read vectors r^i = M_t^T w^{r,i} (§4, step 13).  M (B, N, W), wr (B, R, N) -> r (B, R, W)"""
    return wr @ M, (M, wr)


def read_backward(dr, cache):
    """dr (B, R, W) -> dM (B, N, W), dwr (B, R, N)

    VJP (§5): dM = sum_i w^{r,i} (dr^i)^T (= wr^T dr), dw^{r,i} = M dr^i (= dr M^T)."""
    M, wr = cache
    return wr.transpose(0, 2, 1) @ dr, dr @ M.transpose(0, 2, 1)


# ----------------------------------------------------------------------------------
# The sparse link matrix (§4.4, --sparse-links K): the links kept as K slots per row, a
# column index and a value in each, idx (B, N, K) int and val (B, N, K), 0 in unused
# slots; a row's K column indices are distinct (a row that common.reset_rows zeroed has
# them all 0, with values 0: candidates() counts its column 0 once). The ops work on the
# live entries (at least 1/K, at most N K a batch row, about one a written row in
# practice) and on the 2K candidate columns of the K rows written: O(E + K^3) a step for
# E live entries, not O(N^2); with K >= N (the state then has N slots) nothing is dropped
# and the ops equal the dense ones.


class SparsifyCache(NamedTuple):
    keep: np.ndarray  # (B, K) int the slots kept, in no order (all N of them with K >= N)
    w: np.ndarray  # (B, N) the weighting, or None with K >= N (then w^ = w)
    kept: np.ndarray  # (B, 1) sum of the kept entries (1 where they are all 0)
    scale: np.ndarray  # (B, 1) sum(w) / sum(kept)


def sparsify_forward(w, K):
    """The K largest entries of a weighting, renormalised to the weighting's own mass (§4.4):
    w^ = topK(w) sum(w) / sum(topK(w)), 0 elsewhere; w (B, N) >= 0 -> w^ (B, N), cache.
    The kept set is a constant of the backward (as the allocation's sort is). Keeping the
    mass, not making it 1, leaves a closed write gate closed; where every kept entry is 0
    (w = 0) the scale is 0, never 0/0. With K >= N nothing is dropped and w^ = w, exactly."""
    B, N = w.shape
    if K >= N:
        return w, SparsifyCache(np.broadcast_to(np.arange(N), (B, N)), None, None, None)
    keep = np.argpartition(-w, K - 1, axis=-1)[:, :K]  # (B, K) the K largest, O(N) per row
    top = np.take_along_axis(w, keep, -1)  # (B, K)
    kept = top.sum(-1, keepdims=True)  # (B, 1)
    kept = np.where(kept > 0, kept, 1)  # every kept entry 0: w = 0, and w^ = 0
    scale = w.sum(-1, keepdims=True) / kept  # (B, 1) >= 1
    w_hat = np.zeros_like(w)
    np.put_along_axis(w_hat, keep, top * scale, -1)
    return w_hat, SparsifyCache(keep, w, kept, scale)


def sparsify_backward(dw_hat, cache):
    """dw^ (B, N) -> dw (B, N)

    VJP (§4.4), with S the kept set, t = sum_S w, s = sum w, g = sum_{n in S} dw^_n w_n:
    w^_n = w_n s / t for n in S, so every w_m gets g / t (through s), and the kept ones
    also (s / t) (dw^_m - g / t) (through w_n and t). With K >= N, dw = dw^."""
    keep, w, kept, scale = cache
    if w is None:
        return dw_hat
    g_t = np.einsum("bk,bk->b", np.take_along_axis(dw_hat, keep, -1),
                    np.take_along_axis(w, keep, -1))[:, None] / kept  # (B, 1) g / t
    dw = np.repeat(g_t, w.shape[1], axis=1)  # (B, N) through s = sum w
    np.put_along_axis(dw, keep, g_t + scale * (np.take_along_axis(dw_hat, keep, -1) - g_t), -1)
    return dw


class SparseLinkCache(NamedTuple):
    idx_prev: np.ndarray  # (B, N, K) int the slots' columns of L^_{t-1}
    val_prev: np.ndarray  # (B, N, K) their values
    pos: np.ndarray  # (E,) int the live entries of L^_{t-1} in the rows outside supp(w^), flat positions
    ww: np.ndarray  # (B, N) w^, the sparsified write weighting
    p_prev: np.ndarray  # (B, N) p^_{t-1}, the sparsified precedence
    rows: np.ndarray  # (B, K) int the rows of supp(w^): those that get new entries
    cand: np.ndarray  # (B, K, 2K) int their candidate columns: their K slots', then supp(p^)'s K
    once: np.ndarray  # (B, K, 2K) bool the first candidate of each column (candidates())
    L_cand: np.ndarray  # (B, K, 2K) L^_{t-1} at the candidates (0 at supp(p^)'s)
    pick: np.ndarray  # (B, K, K) int the K candidates each row keeps in its slots
    idx: np.ndarray  # (B, N, K) int the slots' columns of L^_t
    live: np.ndarray  # (B, N, K) bool the entries of L^_t that carry a link (and the gradient)


def slot_entries(idx, val, pos):
    """Entries of slots idx, val (B, N, K) at flat positions pos (E,) -> at, to (E,) int:
    their row i and column j as locations b N + i and b N + j; v (E,) their values."""
    _, N, K = idx.shape
    at = pos // K  # pos = (b N + i) K + k
    return at, at // N * N + idx.reshape(-1)[pos], val.reshape(-1)[pos]


def scatter_add(at, x, n):
    """y[a] = sum of x[e] over the entries e with at[e] = a: at (E,) int, x (E,) -> y (n,)
    in x's dtype (np.bincount; its float64 is cast back)."""
    return np.bincount(at, x, minlength=n).astype(x.dtype)


def candidates(idx_prev, val_prev, rows, cols):
    """The columns of the rows `rows` (B, K) of L^_{t-1} where L^_t can be non-zero: each row's
    K slots, then the K columns `cols` (B, K) of supp(p^) -> cand (B, K, 2K) int, L^_{t-1}
    there (0 at supp(p^)'s), and `once` (B, K, 2K) bool: the first candidate of each
    column, which alone gets the column's update (a supp(p^) column the row has in a slot
    already is the slot's; a row that common.reset_rows zeroed has column 0 in every slot)."""
    b = np.arange(len(rows))[:, None]
    old = idx_prev[b, rows]  # (B, K, K)
    new = np.broadcast_to(cols[:, None, :], old.shape)
    K = old.shape[-1]
    earlier = np.tri(K, k=-1, dtype=bool)  # [k, k2]: slot k2 comes before slot k
    first = ~((old[..., :, None] == old[..., None, :]) & earlier).any(-1)  # (B, K, K)
    unseen = (new[..., :, None] != old[..., None, :]).all(-1)
    cand, once = np.concatenate([old, new], -1), np.concatenate([first, unseen], -1)
    return cand, np.concatenate([val_prev[b, rows], np.zeros_like(old, val_prev.dtype)], -1), once


def sparse_link_forward(idx_prev, val_prev, ww, rows, p_prev, cols):
    """The link matrix update on the slots (§4.4):
        L^_t[i, j] = (1 - w^_i - w^_j) L^_{t-1}[i, j] + w^_i p^_{t-1}[j], zero diagonal,
    then, with K < N, every entry below 1/K set to 0 and each row kept in its K slots.
    idx_prev, val_prev (B, N, K); ww = w^, p_prev = p^_{t-1} (B, N) (sparsify_forward's);
    rows, cols (B, K) int: supp(w^) and supp(p^) -> idx, val (B, N, K), cache
    A row outside supp(w^) has w^_i = 0: its live entries only decay, in their slots, O(E)
    for E of them. A row i of supp(w^) can be non-zero only at its K slots' columns and at
    supp(p^)'s K: those 2K candidates are updated, their diagonal zeroed, thresholded, and
    the K largest (all that pass 1/K, at most K of them) kept in the row's slots, O(K^2) a
    row. With K >= N (N slots) nothing is thresholded, supp(w^) is every row and this is the
    dense link_forward."""
    B, N, K = idx_prev.shape
    b = np.arange(B)[:, None]
    w = ww.reshape(-1)  # by location b N + i
    # 1. the rows outside supp(w^): their live entries decay
    outside = np.ones((B, N), bool)
    outside[b, rows] = False
    pos = np.flatnonzero((val_prev != 0) & outside[:, :, None])  # their live entries, flat positions
    at, to, v_prev = slot_entries(idx_prev, val_prev, pos)
    v = v_prev * (1 - w[at] - w[to])
    # 2. the rows of supp(w^): their 2K candidates get the whole update
    cand, L_cand, once = candidates(idx_prev, val_prev, rows, cols)
    w_i, bc = ww[b, rows][:, :, None], b[:, :, None]  # (B, K, 1)
    D = ((1 - w_i - ww[bc, cand]) * L_cand + w_i * p_prev[bc, cand]) * once  # (B, K, 2K)
    D[cand == rows[:, :, None]] = 0  # L^_t[i, i] = 0
    if K < N:  # 3. the paper's threshold: at most K entries of 1/K or more in a row or column
        v[v < 1 / K] = 0
        D[D < 1 / K] = 0
    pick = np.argpartition(np.where(once, -D, 1), K - 1, axis=-1)[:, :, :K]  # never a column twice
    idx, val = idx_prev.copy(), np.zeros_like(val_prev)
    val.reshape(-1)[pos] = v
    idx[b, rows] = np.take_along_axis(cand, pick, -1)
    val[b, rows] = np.take_along_axis(D, pick, -1)
    live = val > 0 if K < N else idx != np.arange(N)[None, :, None]  # the zeroed entries carry no gradient
    cache = SparseLinkCache(idx_prev, val_prev, pos, ww, p_prev, rows, cand, once, L_cand, pick, idx, live)
    return idx, val, cache


def sparse_link_backward(dval, cache):
    """dval (B, N, K) -> dval_prev (B, N, K), dww, dp_prev (B, N)  (adjoints of w^ and p^)

    VJP (§4.4), the dense link_backward's on the entries kept, G = dval where live (the
    thresholded and diagonal entries pass nothing back): for an entry of row i, column j,
        dL^_{t-1}[i, j] = G (1 - w^_i - w^_j),  dw^_i += G (p^_j - L^_{t-1}[i, j]),
        dw^_j -= G L^_{t-1}[i, j],  dp^_j += G w^_i.
    The rows outside supp(w^) on their live entries, the rows of supp(w^) on their 2K
    candidates; the sums over j into dw^ and dp^ scatter-adds (np.bincount) by location."""
    c = cache
    B, N, K = c.idx.shape
    b = np.arange(B)[:, None]
    bc = b[:, :, None]
    w = c.ww.reshape(-1)
    # 1. the rows outside supp(w^), on their live entries
    at, to, v_prev = slot_entries(c.idx_prev, c.val_prev, c.pos)
    G = dval.reshape(-1)[c.pos] * c.live.reshape(-1)[c.pos]  # (E,)
    dval_prev = np.zeros_like(dval)
    dval_prev.reshape(-1)[c.pos] = G * (1 - w[at] - w[to])
    GL = G * v_prev
    dww = -scatter_add(np.concatenate([at, to]), np.concatenate([GL, GL]), B * N)
    # 2. the rows of supp(w^), on their candidates as in the forward
    dD = np.zeros_like(c.L_cand)
    np.put_along_axis(dD, c.pick, dval[b, c.rows] * c.live[b, c.rows], -1)
    w_i = c.ww[b, c.rows][:, :, None]  # (B, K, 1)
    p_cand = c.p_prev[bc, c.cand] * c.once
    dval_prev[b, c.rows] = (dD * (1 - w_i - c.ww[bc, c.cand]))[:, :, :K]  # the first K candidates: the slots
    dww[(b * N + c.rows).ravel()] += (dD * (p_cand - c.L_cand)).sum(-1).ravel()  # rows distinct: no sums
    at_cand = (bc * N + c.cand).ravel()  # every candidate's column, as a location
    dww -= scatter_add(at_cand, (dD * c.L_cand).ravel(), B * N)
    dp = scatter_add(at_cand, (dD * w_i * c.once).ravel(), B * N)
    return dval_prev, dww.reshape(B, N), dp.reshape(B, N)


def by_location(x):
    """(B, R, N) -> (B N, R): the R heads' values at each location of each batch row, as the
    row b N + n of a table, which the sparse directional op gathers from (np.take) by the
    entries' locations (slot_entries)."""
    B, R, N = x.shape
    return x.transpose(0, 2, 1).reshape(B * N, R)


def scatter_locations(at, x, shape):
    """y[b, :, n] = sum of x[e] over the entries e at location at[e] = b N + n: x (E, R)
    -> y (B, R, N) = shape in x's dtype, one np.bincount over the flattened entries."""
    B, R, N = shape
    bins = (at[:, None] * R + np.arange(R)).ravel()
    return np.bincount(bins, x.ravel(), minlength=B * N * R).reshape(B, N, R).transpose(0, 2, 1).astype(x.dtype)


class SparseDirectionalCache(NamedTuple):
    idx: np.ndarray  # (B, N, K) int the slots' columns of L^_t
    val: np.ndarray  # (B, N, K) their values
    pos: np.ndarray  # (E,) int the live entries' flat positions in the slots
    w: np.ndarray  # (B N, R) the read weightings w^r_{t-1}, by location (by_location)


def sparse_directional_forward(idx, val, live, wr_prev):
    """Forward and backward weightings on the live entries (§4.4), O(E R) for E of them:
        f^i_n = sum over the live entries (n, j) of L^_t[n, j] w^{r,i}_{t-1}[j]  (L^ w),
        b^i_j = sum over the live entries (n, j) of L^_t[n, j] w^{r,i}_{t-1}[n]  (L^T w),
    each a gather and a scatter-add over the entries. idx, val (B, N, K); live (B, N, K)
    bool, the entries that can be non-zero (sparse_link_forward's: with K < N those that
    passed the threshold, at most N K a batch row, a few per written row in practice);
    wr_prev (B, R, N) -> fwd, bwd (B, R, N), cache"""
    pos = np.flatnonzero(live)
    at, to, v = slot_entries(idx, val, pos)  # the entry (n, j) of batch row b: at = b N + n, to = b N + j
    w = by_location(wr_prev)
    fwd = scatter_locations(at, v[:, None] * np.take(w, to, axis=0), wr_prev.shape)
    bwd = scatter_locations(to, v[:, None] * np.take(w, at, axis=0), wr_prev.shape)
    return fwd, bwd, SparseDirectionalCache(idx, val, pos, w)


def sparse_directional_backward(dfwd, dbwd, cache):
    """dfwd, dbwd (B, R, N) -> dval (B, N, K), dwr_prev (B, R, N)

    VJP (§4.4), the dense directional_backward's on the live entries, the entry (n, j):
    dval = sum_i (df^i_n w^i_j + w^i_n db^i_j); dw^i = L^T df^i + L db^i, the same gathers
    and scatter-adds as the forward's, swapped. Slots that are not live get dval 0: they
    pass nothing back through the update either."""
    idx, val, pos, w = cache
    at, to, v = slot_entries(idx, val, pos)
    df, db = by_location(dfwd), by_location(dbwd)
    df_at, db_to = np.take(df, at, axis=0), np.take(db, to, axis=0)  # (E, R)
    dval = np.zeros_like(val)
    dval.reshape(-1)[pos] = (df_at * np.take(w, to, axis=0) + np.take(w, at, axis=0) * db_to).sum(-1)
    dwr = scatter_locations(to, v[:, None] * df_at, dfwd.shape) + scatter_locations(at, v[:, None] * db_to,
                                                                                     dfwd.shape)
    return dval, dwr


def dense_links(idx, val):
    """The sparse link matrix as the dense one: idx, val (B, N, K) -> L (B, N, N), for the
    tests, the checks and the pictures (at small N)."""
    B, N, _ = idx.shape
    L = np.zeros_like(val, shape=(B, N, N))
    L[np.arange(B)[:, None, None], np.arange(N)[None, :, None], idx] = val
    return L


# ----------------------------------------------------------------------------------
# One memory step: the ops in the order of §4, and their backward in the order of §6

MEMORY_STATE = ("M", "u", "ww", "p", "L", "wr")
SPARSE_MEMORY_STATE = ("M", "u", "ww", "p", "L_idx", "L_val", "wr")  # --sparse-links: L as K slots per row (§4.4)


def memory_keys(state):
    """The memory's part of a state: MEMORY_STATE, or SPARSE_MEMORY_STATE when its links are sparse."""
    return SPARSE_MEMORY_STATE if "L_idx" in state else MEMORY_STATE


class SparseLinks(NamedTuple):
    """--sparse-links (§4.4): the caches of step 8 on the slots."""
    write: SparsifyCache  # w^ from w^w_t
    precedence: SparsifyCache  # p^ from p_{t-1}
    update: SparseLinkCache


class MemoryCache(NamedTuple):
    """The caches of one memory step's ops, one field per op."""
    retention: tuple
    usage: tuple
    allocation: AllocationCache
    write_lookup: tuple
    write_weighting: WriteWeightingCache
    write: tuple
    link: tuple  # with --sparse-links (§4.4), a SparseLinks
    precedence: tuple
    directional: DirectionalCache  # with --sparse-links, a SparseDirectionalCache
    sharpen: tuple  # --sharpen (§4.1): the SharpenCache of the forward and of the backward weightings, else None
    read_lookup: tuple
    read_weighting: tuple
    read: tuple
    masked: bool = False  # --mask (§4.2): the lookups are masked_content_forward's
    dealloc: bool = False  # --dealloc (§4.3): the write is dealloc_write_forward's


def lookup_forward(M, k, beta, m=None):
    """A content lookup (§3), masked when a mask m is given (--mask, §4.2)."""
    return content_forward(M, k, beta) if m is None else masked_content_forward(M, k, beta, m)


def memory_step_forward(parts, mem, dealloc=False):
    """parts: the squashed interface (interface_forward); mem: dict of the previous
    M (B, N, W), u, ww, p (B, N), L (B, N, N), wr (B, R, N); dealloc: --dealloc (§4.3)
    -> new mem dict, read vectors r (B, R, W), cache
    The steps of §4 in their order; the comments carry §4's step numbers. Parts that carry
    the sharpnesses of --sharpen (interface_forward's) add step 10a (§4.1); parts that carry
    the masks of --mask make both lookups masked (§4.2); dealloc erases what psi frees (§4.3).
    A mem whose links are K slots per row, L_idx and L_val (B, N, K) instead of L
    (--sparse-links), runs steps 8 and 10 on them (§4.4)."""
    masked = "read_masks" in parts
    psi, c_ret = retention_forward(parts["free_gates"], mem["wr"])  # 2. retention
    u, c_use = usage_forward(mem["u"], mem["ww"], psi)  # 3. usage
    alloc, c_alloc = allocation_forward(u)  # 4. allocation
    cw, c_wlook = lookup_forward(mem["M"], parts["write_key"], parts["write_strength"],
                                 parts.get("write_mask"))  # 5. old memory
    ww, c_ww = write_weighting_forward(alloc, cw[:, 0], parts["alloc_gate"], parts["write_gate"])  # 6.
    if dealloc:  # 7. --dealloc: erase, de-allocate (psi), write
        M, c_write = dealloc_write_forward(mem["M"], ww, parts["erase"], parts["write_vector"], psi)
    else:  # 7. erase, write
        M, c_write = write_forward(mem["M"], ww, parts["erase"], parts["write_vector"])
    if "L_idx" in mem:  # 8. --sparse-links (§4.4): the K largest of w^w_t and p_{t-1}, the slots' update
        K = mem["L_idx"].shape[2]
        w_hat, c_what = sparsify_forward(ww, K)
        p_hat, c_phat = sparsify_forward(mem["p"], K)
        L_idx, L_val, c_update = sparse_link_forward(mem["L_idx"], mem["L_val"], w_hat, c_what.keep, p_hat,
                                                         c_phat.keep)
        links, c_link = {"L_idx": L_idx, "L_val": L_val}, SparseLinks(c_what, c_phat, c_update)
    else:
        L, c_link = link_forward(mem["L"], ww, mem["p"])  # 8. link matrix, with p_{t-1}
        links = {"L": L}
    p, c_prec = precedence_forward(mem["p"], ww)  # 9. precedence
    if "L_idx" in mem:  # 10. forward and backward weightings
        fwd, bwd, c_dir = sparse_directional_forward(L_idx, L_val, c_update.live, mem["wr"])
    else:
        fwd, bwd, c_dir = directional_forward(L, mem["wr"])
    c_sharp = None
    if "forward_sharpness" in parts:  # 10a. --sharpen: each made to sum to 1 and sharpened
        fwd, c_fsharp = sharpen_forward(fwd, parts["forward_sharpness"])
        bwd, c_bsharp = sharpen_forward(bwd, parts["backward_sharpness"])
        c_sharp = (c_fsharp, c_bsharp)
    cr, c_rlook = lookup_forward(M, parts["read_keys"], parts["read_strengths"], parts.get("read_masks"))  # 11.
    wr, c_rw = read_weighting_forward(parts["read_modes"], bwd, cr, fwd)  # 12. read weighting
    r, c_read = read_forward(M, wr)  # 13. read vectors
    new = {"M": M, "u": u, "ww": ww, "p": p, **links, "wr": wr}
    cache = MemoryCache(retention=c_ret, usage=c_use, allocation=c_alloc, write_lookup=c_wlook,
                        write_weighting=c_ww, write=c_write, link=c_link, precedence=c_prec,
                        directional=c_dir, sharpen=c_sharp, read_lookup=c_rlook, read_weighting=c_rw,
                        read=c_read, masked=masked, dealloc=dealloc)
    return new, r, cache


def lookup_backward(dC, cache, masked):
    """Backward of lookup_forward -> dM, dk, dbeta, and dm (None unless masked)."""
    return masked_content_backward(dC, cache) if masked else content_backward(dC, cache) + (None,)


def memory_step_backward(dr, dmem, cache, stop_usage_grad=False):
    """dr (B, R, W): adjoint of this step's reads; dmem: adjoints of this step's new
    memory state sent back by step t+1 (the inbox of §6).
    -> dparts (adjoints of the squashed interface), dmem_prev for step t-1
    The ops' VJPs (§5) in the reverse order of §4, numbered as the sweep of §6; a tensor
    used by several ops sums their adjoints, and is complete before its own op runs."""
    d = {}
    dM_read, dwr = read_backward(dr, cache.read)  # 2. read vectors
    dwr = dwr + dmem["wr"]  # w^r_t's adjoint is complete
    d["read_modes"], dbwd, dcr, dfwd = read_weighting_backward(dwr, cache.read_weighting)  # 3.
    dM_look, d["read_keys"], d["read_strengths"], dm_read = lookup_backward(dcr, cache.read_lookup,
                                                                            cache.masked)  # 4. on M_t
    dM = dmem["M"] + dM_read + dM_look  # M_t's adjoint is complete
    if cache.sharpen is not None:  # 4a. --sharpen: back through S(f, s^f) and S(b, s^b)
        dfwd, d["forward_sharpness"] = sharpen_backward(dfwd, cache.sharpen[0])
        dbwd, d["backward_sharpness"] = sharpen_backward(dbwd, cache.sharpen[1])
    sparse = isinstance(cache.link, SparseLinks)  # --sparse-links (§4.4): L_t is L_val on its slots
    if sparse:
        dL_dir, dwr_dir = sparse_directional_backward(dfwd, dbwd, cache.directional)  # 5.
    else:
        dL_dir, dwr_dir = directional_backward(dfwd, dbwd, cache.directional)  # 5.
    dL = dmem["L_val" if sparse else "L"] + dL_dir  # L_t's adjoint is complete
    dp_prec, dww_prec = precedence_backward(dmem["p"], cache.precedence)  # 6.
    if sparse:  # 7. through the slots' update, then the two sparsifications
        dL_prev, dw_hat, dp_hat = sparse_link_backward(dL, cache.link.update)
        dww_link = sparsify_backward(dw_hat, cache.link.write)
        dp_link = sparsify_backward(dp_hat, cache.link.precedence)
    else:
        dL_prev, dww_link, dp_link = link_backward(dL, cache.link)  # 7.
    if cache.dealloc:  # 8. --dealloc: psi_t reached M_t too
        dM_prev, dww_write, d["erase"], d["write_vector"], dpsi_write = dealloc_write_backward(dM, cache.write)
    else:  # 8.
        dM_prev, dww_write, d["erase"], d["write_vector"] = write_backward(dM, cache.write)
        dpsi_write = 0
    dww = dmem["ww"] + dww_prec + dww_link + dww_write  # w^w_t's adjoint is complete
    dalloc, dcw, d["alloc_gate"], d["write_gate"] = write_weighting_backward(dww, cache.write_weighting)  # 9.
    dM_wlook, d["write_key"], d["write_strength"], dm_write = lookup_backward(dcw[:, None, :], cache.write_lookup,
                                                                              cache.masked)  # 10.
    if cache.masked:  # 4., 10. --mask: the masks' adjoints
        d["read_masks"], d["write_mask"] = dm_read, dm_write
    du = dmem["u"] + allocation_backward(dalloc, cache.allocation)  # 11. u_t's adjoint is complete
    du_prev, dww_prev, dpsi_usage = usage_backward(du, cache.usage, stop_usage_grad)  # 12.
    dpsi = dpsi_usage + dpsi_write  # psi_t's adjoint is complete (usage, and the write with --dealloc)
    d["free_gates"], dwr_ret = retention_backward(dpsi, cache.retention)  # 13.
    dmem_prev = {"M": dM_prev + dM_wlook, "u": du_prev, "ww": dww_prev, "p": dp_prec + dp_link,
                 "L_val" if sparse else "L": dL_prev, "wr": dwr_dir + dwr_ret}  # the slots' indices have none
    return d, dmem_prev


# ----------------------------------------------------------------------------------
# The memory step over blocks of batch rows (§11): the rows of a batch are independent

BLOCK_FLOATS = 2 ** 19  # a (rows, N, N) array of 2 MiB in float32 stays in the cache: 1.03-1.12x the step at N 256


def batch_blocks(B, N, block_floats=BLOCK_FLOATS):
    """Slices of the B batch rows whose (rows, N, N) arrays have about block_floats
    floats; one slice, the whole batch, up to N 128 at batch 32."""
    rows = max(1, block_floats // (N * N))
    return [slice(i, min(i + rows, B)) for i in range(0, B, rows)]


class Block(NamedTuple):
    rows: slice  # the batch rows of the block
    cache: MemoryCache  # memory_step_forward's cache for those rows


def memory_forward(parts, mem, block_floats=BLOCK_FLOATS, dealloc=False):
    """memory_step_forward on blocks of batch rows in turn (§11): parts, mem, dealloc as there
    -> new mem dict, r (B, R, W), cache: a list of Block, in row order. With one block (up
    to N 128 at batch 32) that is one call on the whole batch, nothing copied; with several,
    each block's results are written into the batch's arrays. The cache is a list even for
    one block, so that its readers (discrete_choices, dnc-debug.py) read one shape. With
    --sparse-links (§4.4) there is no (rows, N, N) array: one block."""
    B, N = mem["u"].shape
    blocks = [slice(0, B)] if "L_idx" in mem else batch_blocks(B, N, block_floats)
    if len(blocks) == 1:  # the whole batch in one call, nothing copied
        new, r, cache = memory_step_forward(parts, mem, dealloc)
        return new, r, [Block(blocks[0], cache)]
    new = {k: np.empty_like(mem[k]) for k in MEMORY_STATE}
    r = np.empty_like(mem["M"], shape=(B, mem["wr"].shape[1], mem["M"].shape[2]))
    cache = []
    for rows in blocks:
        new_rows, r[rows], c = memory_step_forward({k: v[rows] for k, v in parts.items()},
                                                   {k: mem[k][rows] for k in MEMORY_STATE}, dealloc)
        for k in MEMORY_STATE:
            new[k][rows] = new_rows[k]
        # the block's cache reads L_t from the batch's array, not from a copy of its own (at N 256
        # the cache of a window would be 614 MiB instead of 358)
        cache.append(Block(rows, c._replace(directional=c.directional._replace(L=new["L"][rows]))))
    return new, r, cache


def memory_backward(dr, dmem, cache, stop_usage_grad=False):
    """memory_step_backward block by block, in reverse: dr (B, R, W), dmem (the inbox),
    cache: memory_forward's list of Block -> dparts, dmem_prev as there"""
    if len(cache) == 1:  # the whole batch in one call
        return memory_step_backward(dr, dmem, cache[0].cache, stop_usage_grad)
    B = dr.shape[0]
    dparts, dmem_prev = {}, {k: np.empty_like(dmem[k]) for k in MEMORY_STATE}
    for rows, c in reversed(cache):
        d, dprev = memory_step_backward(dr[rows], {k: dmem[k][rows] for k in MEMORY_STATE}, c, stop_usage_grad)
        for k, v in d.items():
            if k not in dparts:  # (B, ...), the shape of the part
                dparts[k] = np.empty_like(v, shape=(B,) + v.shape[1:])
            dparts[k][rows] = v
        for k in MEMORY_STATE:
            dmem_prev[k][rows] = dprev[k]
    return dparts, dmem_prev


# ----------------------------------------------------------------------------------
# The feedforward controller's layer (--controller feedforward, §1.1); the LSTM's is
# lstm-numpy.py's lstm_step_forward / lstm_step_backward


FF_CAP = 20.0  # the feedforward controller's h stays in [0, 20], deepmind/dnc's clip_value (§1.1)


def feedforward_step_forward(zx):
    """One layer of the feedforward controller at one step: h = min(relu(zx), FF_CAP),
    nothing carried.

    zx (B, H): the layer's input sum, Wx[x_t] + r_{t-1} Wr (+ h_below Wd) + b
    -> h (B, H), cache: 0 < zx < FF_CAP (B, H) bool, the units that pass zx through"""
    return np.clip(zx, 0, FF_CAP), (zx > 0) & (zx < FF_CAP)


def feedforward_step_backward(dh, active):
    """dh (B, H): adjoint of h from the interface, the output and the layer above;
    active: the forward's cache -> dz (B, H) adjoint of the input sum: 1 where
    0 < z < FF_CAP, else 0. The weight gradients are left to the caller, as with the LSTM's."""
    return dh * active


# ----------------------------------------------------------------------------------
# The model: controller + memory + output


CONTROLLERS = ("lstm", "feedforward")
SIZE_DEFAULTS = {"memory": 16, "width": 16, "reads": 4}  # taken when neither the user nor a task sets them


def add_arguments(parser):
    d = SIZE_DEFAULTS
    parser.add_argument("--memory", type=memory_arg, metavar="N|MIN-MAX",
                        help=f"N, memory slots (default {d['memory']}; may be raised for --eval-lengths); on a "
                             f"task MIN-MAX gives every training batch a fresh memory of N slots drawn "
                             f"uniformly from the range, so that the model cannot depend on N; validation "
                             f"uses MAX")
    parser.add_argument("--width", type=common.positive_int, help=f"W, memory word width (default {d['width']})")
    parser.add_argument("--reads", type=common.positive_int, help=f"R, read heads (default {d['reads']})")
    parser.add_argument("--stop-usage-grad", action="store_true",
                        help="stop the gradient of w^w_{t-1} inside usage, as deepmind/dnc does")
    parser.add_argument("--sharpen", action="store_true",
                        help="make each head's forward and backward weightings sum to 1 again and sharpen "
                             "them, (d + eps)^s / sum (d + eps)^s with a sharpness s >= 1 from the interface "
                             "(Csordas & Schmidhuber 2019), so that following the links loses no read mass "
                             "(docs/dnc.md §4.1)")
    parser.add_argument("--mask", action="store_true",
                        help=f"masked content lookup: each key (the write key and every read key) gets a mask "
                             f"m of W more interface entries, {MASK_MIN:g} + {1 - MASK_MIN:g} sigmoid, and the "
                             f"cosine compares k * m with M_n * m, so that a lookup can ignore parts of the "
                             f"words (Csordas & Schmidhuber 2019; docs/dnc.md §4.2)")
    parser.add_argument("--dealloc", action="store_true",
                        help="de-allocation: what the free gates release (the retention psi) is erased from "
                             "memory too, M_t = M_{t-1} * psi * (1 - w e^T) + w v^T, so that a freed slot is "
                             "found by no content lookup (Csordas & Schmidhuber 2019; docs/dnc.md §4.3)")
    parser.add_argument("--sparse-links", type=common.nonneg_int, metavar="K",
                        help="the paper's sparse link matrix: keep the K largest entries of the write "
                             "weighting and of the precedence, and at most K links per row and column "
                             "(entries below 1/K dropped), so that a step costs O(N K) in the links, "
                             "not O(N^2), and N in the thousands fits (K 8 suffices, the paper says; "
                             "0: the dense links, the default; docs/dnc.md §4.4). A checkpoint keeps its "
                             "K: resuming it with another K, or a dense one with K, is refused")
    parser.add_argument("--controller", choices=CONTROLLERS,
                        help="lstm, or feedforward: ReLU layers with no state of their own, so that only "
                             "the memory can carry a sequence (default lstm, or the checkpoint's)")
    train.add_forget_bias_argument(parser)


def memory_arg(s):
    """--memory: 'N' -> N, or 'MIN-MAX' -> (MIN, MAX) when MIN < MAX."""
    lo, hi = train.range_arg(s)
    return (lo, hi) if lo < hi else hi


def config(args):
    """The run's configuration from the command line. With --memory MIN-MAX, "memory" is
    MAX (what validation, evaluation and the memory estimate use) and "memory_range"
    [MIN, MAX] the range each training batch draws its N from (train.py)."""
    controller = args.controller or "lstm"
    ranged = isinstance(args.memory, tuple)  # --memory MIN-MAX (memory_arg)
    cfg = {"hidden": args.hidden, "layers": args.layers, "controller": controller,
           "memory": args.memory[1] if ranged else args.memory,
           "width": args.width, "reads": args.reads, "stop_usage_grad": bool(args.stop_usage_grad),
           "sharpen": bool(args.sharpen), "mask": bool(args.mask), "dealloc": bool(args.dealloc),
           "sparse_links": args.sparse_links or 0, "dropout": args.dropout}
    if ranged:
        cfg["memory_range"] = list(args.memory)
    if controller == "lstm":
        cfg["forget_bias"] = args.forget_bias
    elif "forget_bias" in getattr(args, "given", ()):
        raise common.UserError("--forget-bias is for the LSTM controller's forget gates; "
                               "the feedforward controller has none")
    return cfg


def memory_floats(cfg, V, B, S):
    """About how many floats training holds: parameters (with their gradients and the
    optimiser's state, up to two copies for Adam) and the window's cache, dominated
    by the (B, N, N) links and (B, N, W) memories of every step (with --sparse-links K,
    by the memories: the links are (B, N, K) slots); for refusing sizes that cannot fit."""
    H, L, N, W, R = cfg["hidden"], cfg["layers"], cfg["memory"], cfg["width"], cfg["reads"]
    lstm_controller = cfg.get("controller", "lstm") == "lstm"
    G = 4 * H if lstm_controller else H  # a layer's width: the LSTM's 4 gates, or the ReLUs
    per_layer = (V + R * W + H + 1) * G + (H * G if lstm_controller else 0)  # Wx, Wr, Wd, b; the LSTM's Wh
    sharpen = cfg.get("sharpen", False)  # checkpoints from before --sharpen have none
    mask = cfg.get("mask", False)  # nor from before --mask
    n_params = L * per_layer + L * H * (interface_size(R, W, sharpen, mask) + V) + R * W * V
    K = min(cfg.get("sparse_links") or N, N)
    # the links of a step: L_t and the cache's (B, N, N), or with --sparse-links (§4.4, §11)
    # L_val, L_idx (int64: 2 floats of float32) and the live mask, (B, N, K) each, and the two
    # caches' positions of the live entries (int64), at most N K of them
    links = 8 * N * K if cfg.get("sparse_links") else 2 * N * N
    per_step = (L * (14 if lstm_controller else 4) * H + links + 8 * N * W + (18 if sharpen else 12) * R * N
                + ((R + 1) * N * W if mask else 0)  # --mask: each key's masked memory, kept in the cache
                + 3 * V)
    # with --sparse-links, the transient arrays of one step: the directional op's (E, R) gathers
    # and scatter-adds over the live entries, at most N K of them
    transient = B * 6 * R * N * K if cfg.get("sparse_links") else 0
    return 4 * n_params + S * B * per_step + transient


def init_params(cfg, V, rng, dtype, V_out=None):
    """Uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) weights, zero biases but the LSTM's forget
    gates' (cfg["forget_bias"], 1 unless given).
    Layer l of the controller reads the input (Wx: a gather of a character or token id, or
    the product with a task's bit-form channels; common.embed), the previous reads (Wr),
    for l > 0 h_t of the layer below (Wd) and, the LSTM only, its own h_{t-1} (Wh). A layer
    is G = 4H wide for the LSTM (the gates [i, f, o, g]), H for the feedforward controller."""
    H, L, W, R = cfg["hidden"], cfg["layers"], cfg["width"], cfg["reads"]
    lstm_controller = cfg.get("controller", "lstm") == "lstm"
    G = 4 * H if lstm_controller else H

    def uniform(fan_in, shape):
        k = 1 / np.sqrt(fan_in)
        return rng.uniform(-k, k, shape)

    p = {}
    for l in range(L):
        p[f"Wx{l}"] = uniform(H, (V, G))
        p[f"Wr{l}"] = uniform(H, (R * W, G))
        if lstm_controller:
            p[f"Wh{l}"] = uniform(H, (H, G))
        if l > 0:
            p[f"Wd{l}"] = uniform(H, (H, G))
        p[f"b{l}"] = np.zeros(G)
        if lstm_controller:
            p[f"b{l}"][H:2 * H] = cfg.get("forget_bias", 1.0)
    n_xi = interface_size(R, W, cfg.get("sharpen", False), cfg.get("mask", False))  # + 2R, + W(R + 1): §4.1, §4.2
    p["Wxi"] = uniform(L * H, (L * H, n_xi))
    p["bxi"] = np.zeros(n_xi)  # a sharpness of oneplus(0) = 1.69, a mask of 0.1 + 0.9 / 2 = 0.55 to start with
    V_out = V_out or V  # V inputs (rows of Wx: the vocabulary, or C channels), V_out outputs
    p["Wy"] = uniform(L * H, (L * H, V_out))
    p["Wry"] = uniform(R * W, (R * W, V_out))
    p["by"] = np.zeros(V_out)
    return {k: v.astype(dtype) for k, v in p.items()}


def open_gates(cfg, shift=3.0):
    """-> prepare(params): the write and allocation gates' biases raised by `shift`, so that
    writes are sharp (allocation is, from an empty memory) and the links of --sparse-links K
    pass their threshold 1/K. For gradient checks (--gradcheck, dnc-debug.py): with random
    parameters the writes are diffuse, every sparse link is dropped, and the links' gradient
    would go unchecked."""
    at = interface_layout(cfg["reads"], cfg["width"], cfg.get("sharpen", False), cfg.get("mask", False))

    def prepare(params):
        params["bxi"][at["alloc_gate"]] += shift
        params["bxi"][at["write_gate"]] += shift
    return prepare


def init_state(cfg, params, B):
    """All zeros (§0), batch on axis 0: the memory's state and reads, and the LSTM
    controller's h and c of each layer (the feedforward controller carries nothing).
    With cfg["sparse_links"] = K (§4.4), the links are min(K, N) slots per row, their
    columns L_idx (B, N, K) (0, 1, ..., K-1: distinct, as a row's always are) and values
    L_val (B, N, K) zeros, instead of L (B, N, N)."""
    H, N, W, R = cfg["hidden"], cfg["memory"], cfg["width"], cfg["reads"]
    dt = params["Wy"].dtype
    K = min(cfg.get("sparse_links") or N, N)  # cfgs from before --sparse-links have none: dense
    if cfg.get("sparse_links"):
        links = {"L_idx": np.broadcast_to(np.arange(K), (B, N, K)).copy(), "L_val": np.zeros((B, N, K), dt)}
    else:
        links = {"L": np.zeros((B, N, N), dt)}
    s = {"M": np.zeros((B, N, W), dt), "u": np.zeros((B, N), dt), "ww": np.zeros((B, N), dt),
         "p": np.zeros((B, N), dt), **links, "wr": np.zeros((B, R, N), dt), "r": np.zeros((B, R, W), dt)}
    for l in range(cfg["layers"] if cfg.get("controller", "lstm") == "lstm" else 0):
        s[f"h{l}"] = np.zeros((B, H), dt)
        s[f"c{l}"] = np.zeros((B, H), dt)
    return s


class DropCache(NamedTuple):
    h: np.ndarray  # (B, H) the layer below's h_t as layer l read it, after dropout
    mask: np.ndarray  # (B, H) its dropout mask, or None


class StepCache(NamedTuple):
    state: dict  # the state the step started from (its r, and the LSTM's h, c, are the step's inputs)
    controller: list  # each layer's cache from lstm_step_forward or feedforward_step_forward, handed back as it is
    drops: list  # DropCache of each layer l > 0
    interface: InterfaceCache
    memory: list  # memory_forward's Blocks of batch rows, each with its MemoryCache


def dnc_step_forward(params, x, state, cfg, rng=None):
    """One step of each row (a character, a token or a row of bit channels) through
    controller and memory.

    x (B,) int ids or (B, C) float channels, state: dict (init_state) -> hcat (B, LH)
    controller output, r (B, R, W)
    current reads, new state, cache. The output layer is left to the caller, so that a
    window's logits come from one matrix product. cfg: model_cfg's (its "block_floats" sizes
    memory_forward's blocks, its "controller" the layers' kind, its "sharpen" and "mask" the
    interface, its "dealloc" the write; a cfg without one of them is one from before the
    option: off); rng: draws the dropout masks
    between controller layers (None: no dropout)."""
    B, Lyr = x.shape[0], cfg["layers"]
    r_prev = state["r"].reshape(B, -1)  # (B, RW) previous reads: the controller's input
    new, hs, controller, below, drops = {}, [], [], None, []
    for l in range(Lyr):
        zx = common.embed(x, params[f"Wx{l}"]) + r_prev @ params[f"Wr{l}"] + params[f"b{l}"]  # (B, G)
        if l > 0:
            below, mask = common.dropout(below, cfg["dropout"], rng)  # between layers
            drops.append(DropCache(below, mask))
            zx += below @ params[f"Wd{l}"]
        if cfg["controller"] == "lstm":
            h, c, cache = lstm.lstm_step_forward(zx, state[f"h{l}"], state[f"c{l}"], params[f"Wh{l}"])
            new[f"h{l}"], new[f"c{l}"] = h, c
        else:  # feedforward: h = min(relu(zx), FF_CAP), and nothing carried to step t+1
            h, cache = feedforward_step_forward(zx)
        hs.append(h)
        controller.append(cache)
        below = h
    hcat = hs[0] if Lyr == 1 else np.concatenate(hs, axis=1)  # (B, LH)
    xi = hcat @ params["Wxi"] + params["bxi"]  # interface vector
    parts, c_interface = interface_forward(xi, cfg["reads"], cfg["width"], cfg.get("sharpen", False),
                                           cfg.get("mask", False))
    mem, r, c_memory = memory_forward(parts, {k: state[k] for k in memory_keys(state)}, cfg["block_floats"],
                                      cfg.get("dealloc", False))
    new.update(mem)
    new["r"] = r
    return hcat, r, new, StepCache(state, controller, drops, c_interface, c_memory)


def dnc_step_backward(dhcat, dr, dstate, cache, params, cfg):
    """Backward of dnc_step_forward.

    dhcat (B, LH), dr (B, R, W): adjoints from the output layer at this step;
    dstate: adjoints of this step's new state from step t+1 (zeros after a window's end)
    -> dstate_prev, dxi (B, |xi|), dzs: list of (B, G) per layer (for the weight sums)
    (G = 4H for the LSTM controller, H for the feedforward one)"""
    _, controller, drops, c_interface, c_memory = cache  # the state is read by backward()
    Lyr, H = cfg["layers"], cfg["hidden"]
    dparts, dmem_prev = memory_backward(dr + dstate["r"], dstate, c_memory, cfg["stop_usage_grad"])
    dxi = interface_backward(dparts, c_interface)
    dhcat = dhcat + dxi @ params["Wxi"].T
    dprev, dzs, dh_from_above = dict(dmem_prev), [None] * Lyr, 0
    dr_prev = 0
    for l in reversed(range(Lyr)):
        if cfg["controller"] == "lstm":  # h_t also reached step t+1, and so did c_t
            dh = dhcat[:, l * H:(l + 1) * H] + dstate[f"h{l}"] + dh_from_above
            dz, dprev[f"h{l}"], dprev[f"c{l}"] = lstm.lstm_step_backward(dh, dstate[f"c{l}"], controller[l],
                                                                         params[f"Wh{l}"])
        else:  # feedforward: h_t reached the interface, the output and the layer above, not step t+1
            dz = feedforward_step_backward(dhcat[:, l * H:(l + 1) * H] + dh_from_above, controller[l])
        dzs[l] = dz
        dr_prev = dr_prev + dz @ params[f"Wr{l}"].T
        if l > 0:
            dh_from_above = common.dropout_backward(dz @ params[f"Wd{l}"].T, drops[l - 1].mask)
    dprev["r"] = dr_prev.reshape(dr.shape)
    return dprev, dxi, dzs


class ModelCache(NamedTuple):
    inputs: np.ndarray  # (S, B) int ids or (S, B, C) float channels
    params: dict
    cfg: dict
    steps: list  # StepCache of each step
    Hc: np.ndarray  # (S, B, LH) the controller's outputs
    Hy: np.ndarray  # (S, B, LH) the same after dropout, as the output layer read them
    mask_y: np.ndarray  # (S, B, LH) that dropout mask, or None
    Rs: np.ndarray  # (S, B, RW) the reads of each step, as the output layer read them


def forward(params, inputs, state, cfg=None, rng=None):
    """inputs (S, B) int ids, or (S, B, C) float channels -> logits (S, B, V_out), last state, cache

    cfg: the run's configuration (its "stop_usage_grad" and "dropout" are read here; the
    sizes come from the arrays); rng: draws the dropout masks. Dropout is on only when
    both are given, i.e. in training, never in validation or sampling."""
    cfg = model_cfg(params, state, cfg, rng)
    steps, hcats, rs = [], [], []
    for t in range(inputs.shape[0]):
        hcat, r, state, cache = dnc_step_forward(params, inputs[t], state, cfg, rng)
        hcats.append(hcat)
        rs.append(r.reshape(r.shape[0], -1))
        steps.append(cache)
    Hc, Rs = np.stack(hcats), np.stack(rs)  # (S, B, LH), (S, B, RW)
    Hy, mask_y = common.dropout(Hc, cfg["dropout"], rng)  # before the output layer
    logits = Hy @ params["Wy"] + Rs @ params["Wry"] + params["by"]  # (S, B, V_out) the paper's v_t + W_r r_t
    return logits, state, ModelCache(inputs, params, cfg, steps, Hc, Hy, mask_y, Rs)


def backward(dlogits, cache):
    """dlogits (S, B, V_out) -> grads with the keys of params"""
    inputs, params, cfg, steps, Hc, Hy, mask_y, Rs = cache
    S, B, V = dlogits.shape
    flat = dlogits.reshape(-1, V)
    grads = {"Wy": Hy.reshape(S * B, -1).T @ flat, "Wry": Rs.reshape(S * B, -1).T @ flat, "by": flat.sum(0)}
    dHc = common.dropout_backward(dlogits @ params["Wy"].T, mask_y)  # (S, B, LH) all steps at once
    dRs = (dlogits @ params["Wry"].T).reshape(S, B, cfg["reads"], cfg["width"])
    dstate = {k: np.zeros_like(v) for k, v in steps[-1].state.items()}  # empty inbox after the window
    dxis, dzs = [None] * S, [None] * S
    for t in reversed(range(S)):
        dstate, dxis[t], dzs[t] = dnc_step_backward(dHc[t], dRs[t], dstate, steps[t], params, cfg)
    # weight gradients summed over the window in single matrix products
    dxi = np.stack(dxis).reshape(S * B, -1)
    grads["Wxi"] = Hc.reshape(S * B, -1).T @ dxi
    grads["bxi"] = dxi.sum(0)
    H = cfg["hidden"]
    R_prev = np.stack([step.state["r"].reshape(B, -1) for step in steps]).reshape(S * B, -1)  # (S*B, RW)
    for l in range(cfg["layers"]):
        dz = np.stack([d[l] for d in dzs])  # (S, B, G)
        dzf = dz.reshape(S * B, -1)
        if cfg["controller"] == "lstm":  # the recurrent weights
            h_prev = np.stack([step.state[f"h{l}"] for step in steps]).reshape(S * B, H)
            grads[f"Wh{l}"] = h_prev.T @ dzf
        grads[f"Wr{l}"] = R_prev.T @ dzf
        grads[f"b{l}"] = dzf.sum(0)
        grads[f"Wx{l}"] = common.embed_backward(inputs, dz, params[f"Wx{l}"].shape[0])  # gather or product
        if l > 0:  # the layer below's h as layer l read it, after dropout
            below = np.stack([step.drops[l - 1].h for step in steps]).reshape(S * B, H)
            grads[f"Wd{l}"] = below.T @ dzf
    return grads


def step(params, x, state, cfg=None):
    """One character per row through the same step function: x (B,) -> logits (B, V), state
    cfg: the run's (a checkpoint's), which says --mask and --dealloc (model_cfg)"""
    hcat, r, state, _ = dnc_step_forward(params, x, state, model_cfg(params, state, cfg))
    return hcat @ params["Wy"] + r.reshape(r.shape[0], -1) @ params["Wry"] + params["by"], state


def discrete_choices(cache):
    """The discrete choices of a forward, which the gradient treats as constants, so that a
    gradient check must not difference across a change of them: the free-list orders phi
    (S, B, N) (§5; each step's blocks of batch rows, memory_forward, joined again in row
    order) and, with the feedforward controller, after them on the last axis, which units
    of each layer passed z through (S, B, LH), kinks at z = 0 and FF_CAP (§1.1). With
    --sparse-links (§4.4), between the two, the selections of the sparse links (S, B, 2K + NK):
    the kept sets of w^w_t and of p_{t-1}, and each row's live entries' columns, each sorted.
    -> (S, B, N [+ 2K + NK] [+ LH]) int"""
    phi = np.stack([np.concatenate([c.allocation.phi for _, c in step.memory]) for step in cache.steps])
    if isinstance(cache.steps[0].memory[0].cache.link, SparseLinks):  # one block of batch rows
        phi = np.concatenate([phi, np.stack([sparse_selections(step.memory[0].cache.link)
                                             for step in cache.steps])], axis=-1)
    if cache.cfg["controller"] == "lstm":
        return phi
    active = np.stack([np.concatenate(step.controller, axis=1) for step in cache.steps])  # (S, B, LH) bool
    return np.concatenate([phi, active], axis=-1)


def sparse_selections(links):
    """The discrete choices of one step's sparse links (§4.4), a SparseLinks -> (B, 2K + NK)
    int: the kept sets of w^w_t and of p_{t-1}, sorted, then each row's live entries' columns,
    sorted, N where an entry is dropped (the threshold) or on the diagonal."""
    u = links.update
    B, N, _ = u.idx.shape
    entries = np.sort(np.where(u.live, u.idx, N), -1).reshape(B, -1)
    return np.concatenate([np.sort(links.write.keep, -1), np.sort(links.precedence.keep, -1), entries], -1)


def memory_pictures(params, inputs, cfg):
    """What --show and --plot draw of the memory at work, one episode from a zero state:
    inputs (T, 1) int or (T, 1, C) float -> rows (label, (K, T) array in [0, 1]): the
    write weighting and each read head's weighting (locations down, time across), the
    free, allocation and write gates, and the usage."""
    state = init_state(cfg, params, 1)
    run_cfg = model_cfg(params, state, cfg)
    seen = {"ww": [], "wr": [], "u": [], "free": [], "alloc": [], "write": []}
    for x in inputs:
        _, _, state, cache = dnc_step_forward(params, x, state, run_cfg)
        parts = cache.interface.parts  # the squashed interface
        seen["ww"].append(state["ww"][0])
        seen["wr"].append(state["wr"][0])
        seen["u"].append(state["u"][0])
        seen["free"].append(parts["free_gates"][0])
        seen["alloc"].append(parts["alloc_gate"][0])
        seen["write"].append(parts["write_gate"][0])
    a = {k: np.stack(v, axis=-1) for k, v in seen.items()}  # time on the last axis
    rows = [("write w^w", a["ww"])]
    rows += [(f"read {i} w^r", a["wr"][i]) for i in range(a["wr"].shape[0])]
    rows += [("free gates f", a["free"]), ("alloc gate", a["alloc"]), ("write gate", a["write"]),
             ("usage u", a["u"])]
    return rows


def model_cfg(params, state, cfg=None, rng=None):
    """The sizes and the controller, read off the arrays (layers l > 0 have Wd{l}, only the
    LSTM has the recurrent Wh{l}; the state of --sparse-links has K slots per row:
    init_state made it from cfg["sparse_links"], min(K, N), which is all the sparse ops
    depend on, §4.4), so forward works for any params / state pair; the refinements --mask
    and --dealloc from the run's configuration cfg (off when it has no "mask" or "dealloc":
    a checkpoint from before them), and --sharpen from cfg too, or, in a cfg without
    "sharpen" (before --sharpen; or cfg None), off the width of W_xi, 2R wider with it; and
    the options that no array shows, also from cfg: --stop-usage-grad (off when cfg is None),
    --dropout (on only when an rng draws the masks) and the size of memory_forward's blocks
    of batch rows (BLOCK_FLOATS unless cfg sets "block_floats")."""
    B, R, N = state["wr"].shape
    W = state["M"].shape[2]
    cfg = cfg or {}
    layers = 1 + sum(k.startswith("Wd") for k in params)
    mask = bool(cfg.get("mask", False))
    sharpen = cfg["sharpen"] if "sharpen" in cfg else params["Wxi"].shape[1] == interface_size(R, W, True, mask)
    return {"controller": "lstm" if "Wh0" in params else "feedforward",
            "hidden": params["Wxi"].shape[0] // layers, "layers": layers,
            "memory": N, "width": W, "reads": R,
            "sharpen": bool(sharpen), "mask": mask, "dealloc": bool(cfg.get("dealloc", False)),
            "sparse_links": state["L_idx"].shape[2] if "L_idx" in state else 0,
            "stop_usage_grad": bool(cfg.get("stop_usage_grad", False)),
            "dropout": cfg.get("dropout", 0.0) if rng is not None else 0.0,
            "block_floats": cfg.get("block_floats", BLOCK_FLOATS)}


if __name__ == "__main__":
    import sys

    train.main(sys.modules[__name__], "Train a char-level DNC (Graves et al. 2016) on a text file or a "
               "memory task, or sample from one.", {"time": 300.0})
