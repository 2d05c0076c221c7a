"""What to run to trust the DNC: every memory operation, the controller's layer and the
whole model against central differences, in float64 at small sizes, plus invariants, the
direction of the temporal links and a NaN hunt. Exits 1 on any failure.

    python dnc-debug.py
    python dnc-debug.py --hidden 8 --memory 8 --width 6 --reads 3 --seq 6 --checks 20
    python dnc-debug.py --memory 33 --block-floats 2000   # the model in blocks of one batch row
    python dnc-debug.py --controller feedforward --layers 3 --dropout 0.5

1. each memory op alone: its inputs random, an upstream adjoint G random, loss = sum(out * G);
   the whole memory step, also a batch row at a time (memory_forward's blocks); the
   sharpening of --sharpen alone, the interface with its sharpnesses, and the whole memory
   step with it, also with --stop-usage-grad; the masked lookup of --mask and the
   de-allocating write of --dealloc alone (its retention input psi too), the interface
   with the masks, the whole step with each (--dealloc also a batch row at a time) and
   with all three refinements and --stop-usage-grad; the ops of --sparse-links K (K = N/2 < N)
   alone, the sparsified weighting, the update on slots and the directional weightings, and
   the whole memory step with them (skipping perturbations that change the kept entries);
   one step of a controller layer alone, the LSTM cell and the feedforward ReLU; a memory
   task's bit form alone, the input product x W_x of bit channels and the bit-wise sigmoid
   cross-entropy; and the allocation's backward by recursive doubling against its plain
   reverse loop;
2. the whole model (controller, memory, output, loss) over --seq steps, every parameter,
   with each controller (--controller: one of them), 1 and 2 layers (--layers: that many),
   with dropout (--dropout), each without and with --sharpen: on random characters with
   the softmax cross-entropy, and on repeat-copy episodes in the bit form (bit and flag
   channels in through a product, the bit-wise sigmoid cross-entropy out); and with
   --sharpen and --stop-usage-grad, the first and the last of those configurations on
   characters, against a forward whose usage takes w^w_{t-1} as a constant (§8); then two
   configurations with --mask --dealloc (§4.2, §4.3), the first controller and layer count,
   and the last with --sharpen too, on text and bits, the last also with --stop-usage-grad;
   and with --sparse-links N/2 (§4.4), the first configuration on characters and the last
   (with all three refinements) on bits, the write and allocation gates opened so that
   links pass the threshold 1/K;
3. invariants on a run, plain, with --sharpen, with all three refinements and with
   --sparse-links: weightings sum to at most 1 (the sharpened ones to exactly 1), links in
   [0, 1] with a zero diagonal (the sparse ones at most K in a row or column, rows and
   columns summing to at most 1);
4. direction: after writing slots 0, 1, 2 in turn, forward from 0 is 1, backward from 1 is 0;
5. an all-zero memory row and very large strengths (and sharpnesses): no NaN or inf anywhere,
   also with --sparse-links.
The relative error of an entry is |num - ana| / max(|num|, |ana|, floor), the floor being
the largest analytic magnitude of that tensor (common.gradcheck); the bar is 1e-6.
"""
import os
import sys

import numpy as np

import common

dnc = common.load_script("dnc-numpy.py")
tasks = common.load_script(os.path.join("data", "tasks.py"))
TOL = 1e-6


# ----------------------------------------------------------------------------------
# 1. Each memory operation alone


def random_weighting(rng, shape, total=0.9):
    """Non-negative rows summing to `total` < 1, like a real weighting."""
    w = rng.random(shape) + 0.05
    return total * w / w.sum(-1, keepdims=True)


def memory_ops(B, N, W, R, rng):
    """(name, inputs, forward(inputs) -> (outputs tuple, cache), backward(douts, cache) -> dict)"""
    M = rng.standard_normal((B, N, W))
    M[:, 0] = 0  # an all-zero row exercises the eps inside the cosine's square roots
    unit = lambda *shape: rng.uniform(0.05, 0.95, shape)  # noqa: E731  values in (0, 1)
    u = rng.permutation(np.linspace(0.05, 0.95, N))[None].repeat(B, 0) + 0.01 * rng.random((B, N))  # distinct
    mem = {"M": M, "u": u, "ww": random_weighting(rng, (B, N)), "p": random_weighting(rng, (B, N), 0.7),
           "L": unit(B, N, N) * (1 - np.eye(N)) / N, "wr": random_weighting(rng, (B, R, N))}
    parts, _ = dnc.interface_forward(rng.standard_normal((B, dnc.interface_size(R, W))), R, W)

    def names(*keys):
        return lambda douts, grads: dict(zip(keys, grads))

    def step_check(forward, backward, part_names=tuple(parts), stop=False, dealloc=False):
        """a memory step's pair on named inputs and outputs: the interface parts part_names
        and the previous state prev_*. With stop (--stop-usage-grad) prev_ww is no input:
        usage reads mem["ww"] as a constant, the model whose gradient the flag gives (§8). With
        dealloc (--dealloc), the step's write erases what the retention frees (§4.3)."""
        def fwd(I):
            prev = {k: I["prev_" + k] if "prev_" + k in I else mem[k] for k in dnc.MEMORY_STATE}
            new, r, cache = forward({k: I[k] for k in part_names}, prev, dealloc=dealloc)
            return tuple(new[k] for k in dnc.MEMORY_STATE) + (r,), cache

        def bwd(douts, cache):
            dparts, dprev = backward(douts[-1], dict(zip(dnc.MEMORY_STATE, douts[:-1])), cache, stop)
            return {**dparts, **{"prev_" + k: v for k, v in dprev.items()}}
        return fwd, bwd

    one_row_blocks = lambda p, m, dealloc: dnc.memory_forward(p, m, N * N, dealloc)  # noqa: E731

    ops = [
        ("content weighting", {"M": M, "k": rng.standard_normal((B, R, W)), "beta": 1 + 3 * rng.random((B, R))},
         lambda I: dnc.content_forward(I["M"], I["k"], I["beta"]),
         lambda d, c: names("M", "k", "beta")(d, dnc.content_backward(d[0], c))),
        ("retention", {"free": unit(B, R), "wr_prev": mem["wr"]},
         lambda I: dnc.retention_forward(I["free"], I["wr_prev"]),
         lambda d, c: names("free", "wr_prev")(d, dnc.retention_backward(d[0], c))),
        ("usage", {"u_prev": u, "ww_prev": mem["ww"], "psi": unit(B, N)},
         lambda I: dnc.usage_forward(I["u_prev"], I["ww_prev"], I["psi"]),
         lambda d, c: names("u_prev", "ww_prev", "psi")(d, dnc.usage_backward(d[0], c))),
        ("allocation", {"u": u},
         lambda I: dnc.allocation_forward(I["u"]),
         lambda d, c: {"u": dnc.allocation_backward(d[0], c)}),
        ("write weighting", {"alloc": random_weighting(rng, (B, N)), "cw": random_weighting(rng, (B, N), 1.0),
                             "ga": unit(B, 1), "gw": unit(B, 1)},
         lambda I: dnc.write_weighting_forward(I["alloc"], I["cw"], I["ga"], I["gw"]),
         lambda d, c: names("alloc", "cw", "ga", "gw")(d, dnc.write_weighting_backward(d[0], c))),
        ("erase and write", {"M_prev": M, "ww": mem["ww"], "e": unit(B, W), "v": rng.standard_normal((B, W))},
         lambda I: dnc.write_forward(I["M_prev"], I["ww"], I["e"], I["v"]),
         lambda d, c: names("M_prev", "ww", "e", "v")(d, dnc.write_backward(d[0], c))),
        ("link matrix", {"L_prev": mem["L"], "ww": mem["ww"], "p_prev": mem["p"]},
         lambda I: dnc.link_forward(I["L_prev"], I["ww"], I["p_prev"]),
         lambda d, c: names("L_prev", "ww", "p_prev")(d, dnc.link_backward(d[0], c))),
        ("precedence", {"p_prev": mem["p"], "ww": mem["ww"]},
         lambda I: dnc.precedence_forward(I["p_prev"], I["ww"]),
         lambda d, c: names("p_prev", "ww")(d, dnc.precedence_backward(d[0], c))),
        ("forward/backward weightings", {"L": mem["L"], "wr_prev": mem["wr"]},
         lambda I: (lambda f, b, c: ((f, b), c))(*dnc.directional_forward(I["L"], I["wr_prev"])),
         lambda d, c: names("L", "wr_prev")(d, dnc.directional_backward(d[0], d[1], c))),
        ("read weighting", {"modes": common.softmax(rng.standard_normal((B, R, 3))),
                            "bwd": random_weighting(rng, (B, R, N)), "cr": random_weighting(rng, (B, R, N), 1.0),
                            "fwd": random_weighting(rng, (B, R, N))},
         lambda I: dnc.read_weighting_forward(I["modes"], I["bwd"], I["cr"], I["fwd"]),
         lambda d, c: names("modes", "bwd", "cr", "fwd")(d, dnc.read_weighting_backward(d[0], c))),
        ("read vectors", {"M": M, "wr": mem["wr"]},
         lambda I: dnc.read_forward(I["M"], I["wr"]),
         lambda d, c: names("M", "wr")(d, dnc.read_backward(d[0], c))),
        ("interface vector", {"xi": rng.standard_normal((B, dnc.interface_size(R, W)))},
         lambda I: (lambda parts, c: (tuple(parts.values()), c))(*dnc.interface_forward(I["xi"], R, W)),
         lambda d, c: {"xi": dnc.interface_backward(dict(zip(parts, d)), c)}),
        # the whole step with a memory of no zero row: the lookups' zero-row path, whose
        # 1/sqrt(eps) curvature needs a smaller h, is checked by "content weighting"
        ("one whole memory step", {**parts, **{"prev_" + k: v for k, v in mem.items()},
                                   "prev_M": rng.standard_normal((B, N, W))},
         *step_check(dnc.memory_step_forward, dnc.memory_step_backward)),
        ("one whole memory step, a batch row at a time",
         {**{k: v.copy() for k, v in parts.items()}, **{"prev_" + k: v.copy() for k, v in mem.items()},
          "prev_M": rng.standard_normal((B, N, W))}, *step_check(one_row_blocks, dnc.memory_backward)),
    ]
    # --sharpen (§4.1): the op alone, on weightings with no entry near 0 (there log(d + eps)
    # bends on the scale eps, far below h), the interface with the sharpnesses, the whole step
    sharp_parts, _ = dnc.interface_forward(rng.standard_normal((B, dnc.interface_size(R, W, True))), R, W, True)
    sharp_step = {**sharp_parts, **{"prev_" + k: v.copy() for k, v in mem.items()},
                  "prev_M": rng.standard_normal((B, N, W))}
    ops += [
        ("sharpened weighting (--sharpen)", {"d": random_weighting(rng, (B, R, N)), "s": 1 + 3 * rng.random((B, R))},
         lambda I: dnc.sharpen_forward(I["d"], I["s"]),
         lambda d, c: names("d", "s")(d, dnc.sharpen_backward(d[0], c))),
        # the 2R sharpness entries of xi as an input of their own, so that every one is checked
        ("interface vector, --sharpen", {"xi": rng.standard_normal((B, dnc.interface_size(R, W))),
                                         "sharpness": rng.standard_normal((B, 2 * R))},
         lambda I: (lambda parts, c: (tuple(parts.values()), c))(
             *dnc.interface_forward(np.concatenate([I["xi"], I["sharpness"]], axis=1), R, W, True)),
         lambda d, c: (lambda dxi: {"xi": dxi[:, :-2 * R], "sharpness": dxi[:, -2 * R:]})(
             dnc.interface_backward(dict(zip(sharp_parts, d)), c))),
        ("one whole memory step, --sharpen", sharp_step,
         *step_check(dnc.memory_step_forward, dnc.memory_step_backward, tuple(sharp_parts))),
        ("one whole memory step, --sharpen --stop-usage-grad (w^w_{t-1} a constant of usage)",
         {k: v.copy() for k, v in sharp_step.items() if k != "prev_ww"},
         *step_check(dnc.memory_step_forward, dnc.memory_step_backward, tuple(sharp_parts), stop=True)),
    ]
    # --mask (§4.2) and --dealloc (§4.3): each op alone (the lookup on a memory of no zero row,
    # as the whole step's), the interface with the W(R + 1) mask entries, the whole step with
    # each, and with both, --sharpen and --stop-usage-grad
    mask_parts, _ = dnc.interface_forward(rng.standard_normal((B, dnc.interface_size(R, W, mask=True))), R, W,
                                          mask=True)
    all_parts, _ = dnc.interface_forward(rng.standard_normal((B, dnc.interface_size(R, W, True, True))), R, W,
                                         True, True)
    n_mask = W * (R + 1)

    def step_inputs(step_parts):
        return {**{k: v.copy() for k, v in step_parts.items()}, **{"prev_" + k: v.copy() for k, v in mem.items()},
                "prev_M": rng.standard_normal((B, N, W))}

    ops += [
        ("masked content weighting (--mask)",
         {"M": rng.standard_normal((B, N, W)), "k": rng.standard_normal((B, R, W)),
          "beta": 1 + 3 * rng.random((B, R)), "m": rng.uniform(dnc.MASK_MIN, 1, (B, R, W))},
         lambda I: dnc.masked_content_forward(I["M"], I["k"], I["beta"], I["m"]),
         lambda d, c: names("M", "k", "beta", "m")(d, dnc.masked_content_backward(d[0], c))),
        ("erase, de-allocate and write (--dealloc)",
         {"M_prev": M, "ww": mem["ww"], "e": unit(B, W), "v": rng.standard_normal((B, W)), "psi": unit(B, N)},
         lambda I: dnc.dealloc_write_forward(I["M_prev"], I["ww"], I["e"], I["v"], I["psi"]),
         lambda d, c: names("M_prev", "ww", "e", "v", "psi")(d, dnc.dealloc_write_backward(d[0], c))),
        # the W(R + 1) mask entries of xi as an input of their own, so that every one is checked
        ("interface vector, --mask", {"xi": rng.standard_normal((B, dnc.interface_size(R, W))),
                                      "masks": rng.standard_normal((B, n_mask))},
         lambda I: (lambda parts, c: (tuple(parts.values()), c))(
             *dnc.interface_forward(np.concatenate([I["xi"], I["masks"]], axis=1), R, W, mask=True)),
         lambda d, c: (lambda dxi: {"xi": dxi[:, :-n_mask], "masks": dxi[:, -n_mask:]})(
             dnc.interface_backward(dict(zip(mask_parts, d)), c))),
        ("one whole memory step, --mask", step_inputs(mask_parts),
         *step_check(dnc.memory_step_forward, dnc.memory_step_backward, tuple(mask_parts))),
        ("one whole memory step, --dealloc", step_inputs(parts),
         *step_check(dnc.memory_step_forward, dnc.memory_step_backward, dealloc=True)),
        ("one whole memory step, --dealloc, a batch row at a time", step_inputs(parts),
         *step_check(one_row_blocks, dnc.memory_backward, dealloc=True)),
        ("one whole memory step, --mask --dealloc --sharpen --stop-usage-grad",
         {k: v for k, v in step_inputs(all_parts).items() if k != "prev_ww"},
         *step_check(dnc.memory_step_forward, dnc.memory_step_backward, tuple(all_parts), stop=True, dealloc=True)),
    ]
    return ops


def sparse_link_ops(B, N, W, R, rng):
    """The ops of --sparse-links (§4.4) alone and one whole memory step with them, as
    memory_ops lists its ops, with K = N // 2 (< N: the selections and the 1/K threshold
    at work), and a fifth item: choices(cache) -> array of the discrete choices (the kept
    sets, the live entries, the free list), or None. A perturbation that changes them is
    skipped, as the whole-model check skips a change of the sort order."""
    K = max(1, N // 2)
    b = np.arange(B)[:, None]

    def sharp_weighting(total):  # a few large entries: some w^_i p^_j above 1/K, most below
        w = rng.random((B, N)) ** 4 + 0.01
        return total * w / w.sum(-1, keepdims=True)

    rows = np.argsort(rng.random((B, N)), -1)[:, :K]  # (B, K) supp(w^): distinct rows
    w_hat = np.zeros((B, N))
    w_hat[b, rows] = 0.9 * rng.dirichlet(np.ones(K) * 0.5, B)
    p_hat, cols = np.zeros((B, N)), np.argsort(rng.random((B, N)), -1)[:, :K]  # cols: supp(p^)
    p_hat[b, cols] = 0.95 * rng.dirichlet(np.ones(K) * 0.5, B)
    idx_prev = np.argsort(rng.random((B, N, N)), -1)[:, :, :K]  # distinct columns in each row
    val_prev = rng.uniform(0.05, 0.6, (B, N, K)) * (idx_prev != np.arange(N)[:, None])
    idx = np.argsort(rng.random((B, N, N)), -1)[:, :, :K]
    live = rng.random((B, N, K)) < 0.7  # the slots not live are skipped: their values pass nothing

    # one whole memory step from the state of a few earlier steps with the gates open, so
    # that the writes are sharp and links pass the threshold
    parts, _ = dnc.interface_forward(rng.standard_normal((B, dnc.interface_size(R, W))), R, W)
    parts["alloc_gate"], parts["write_gate"] = np.full((B, 1), 0.9), np.full((B, 1), 0.95)
    cfg = {"hidden": 1, "layers": 0, "memory": N, "width": W, "reads": R, "sparse_links": K}  # no controller
    mem = {k: v for k, v in dnc.init_state(cfg, {"Wy": np.zeros(1)}, B).items() if k != "r"}  # float64
    for _ in range(4):
        p, _ = dnc.interface_forward(rng.standard_normal((B, dnc.interface_size(R, W))), R, W)
        p["alloc_gate"], p["write_gate"] = np.full((B, 1), 0.95), np.full((B, 1), 0.95)
        mem, _, _ = dnc.memory_step_forward(p, mem)
    floats = tuple(k for k in dnc.SPARSE_MEMORY_STATE if k != "L_idx")  # the indices are no input

    def step_forward(I):
        prev = {k: I.get("prev_" + k, mem[k]) for k in dnc.SPARSE_MEMORY_STATE}
        new, r, cache = dnc.memory_step_forward({k: I[k] for k in parts}, prev)
        return tuple(new[k] for k in floats) + (r,), cache

    def step_backward(douts, cache):
        dparts, dprev = dnc.memory_step_backward(douts[-1], dict(zip(floats, douts[:-1])), cache)
        return {**dparts, **{"prev_" + k: v for k, v in dprev.items()}}

    def step_choices(cache):
        return np.concatenate([cache.allocation.phi, dnc.sparse_selections(cache.link)], -1)

    def names(*keys):
        return lambda douts, grads: dict(zip(keys, grads))

    return [
        (f"sparsified weighting (--sparse-links {K})", {"w": sharp_weighting(0.9)},
         lambda I: dnc.sparsify_forward(I["w"], K),
         lambda d, c: {"w": dnc.sparsify_backward(d[0], c)},
         lambda c: np.sort(c.keep, -1)),
        (f"sparse link matrix update (--sparse-links {K})", {"val_prev": val_prev, "ww": w_hat, "p_prev": p_hat},
         lambda I: (lambda i, v, c: ((v,), c))(*dnc.sparse_link_forward(idx_prev, I["val_prev"], I["ww"], rows,
                                                                         I["p_prev"], cols)),
         lambda d, c: names("val_prev", "ww", "p_prev")(d, dnc.sparse_link_backward(d[0], c)),
         lambda c: np.sort(np.where(c.live, c.idx, N), -1)),
        (f"sparse forward/backward weightings (--sparse-links {K})",
         {"val": rng.random((B, N, K)), "wr_prev": random_weighting(rng, (B, R, N))},
         lambda I: (lambda f, b, c: ((f, b), c))(*dnc.sparse_directional_forward(idx, I["val"], live, I["wr_prev"])),
         lambda d, c: names("val", "wr_prev")(d, dnc.sparse_directional_backward(d[0], d[1], c)),
         None),
        (f"one whole memory step, --sparse-links {K}",
         {**parts, **{"prev_" + k: mem[k].copy() for k in floats}}, step_forward, step_backward, step_choices),
    ]


def controller_ops(B, H, rng):
    """One step of a controller layer alone, as memory_ops lists the memory's ops: the LSTM
    cell (lstm-numpy.py's; the gradient of Wh formed as dnc-numpy.py's backward forms it,
    h_prev^T dz) and the feedforward ReLU capped at 20 (§1.1), its input at least 0.1 from
    the kinks at 0 and 20."""
    zx = rng.standard_normal((B, H))
    zx += 0.1 * np.sign(zx)  # |zx| >= 0.1: no perturbation crosses z = 0
    zx[0, :2] = [dnc.FF_CAP + 1, dnc.FF_CAP - 1]  # one unit over the cap, one under it
    cell = {"zx": rng.standard_normal((B, 4 * H)), "h_prev": rng.standard_normal((B, H)),
            "c_prev": rng.standard_normal((B, H)), "Wh": 0.5 * rng.standard_normal((H, 4 * H))}

    def lstm_forward(I):
        h, c, cache = dnc.lstm.lstm_step_forward(I["zx"], I["h_prev"], I["c_prev"], I["Wh"])
        return (h, c), cache

    def lstm_backward(douts, cache):
        dz, dh_prev, dc_prev = dnc.lstm.lstm_step_backward(douts[0], douts[1], cache, cell["Wh"])
        return {"zx": dz, "h_prev": dh_prev, "c_prev": dc_prev, "Wh": cell["h_prev"].T @ dz}

    return [
        ("controller layer, LSTM cell", cell, lstm_forward, lstm_backward),
        ("controller layer, feedforward ReLU", {"zx": zx},
         lambda I: dnc.feedforward_step_forward(I["zx"]),
         lambda d, c: {"zx": dnc.feedforward_step_backward(d[0], c)}),
    ]


def bit_ops(B, H, rng, bits=3, T=4):
    """A memory task's bit form alone, as memory_ops lists the memory's ops: the controller's
    input product x W_x of a row of bit and flag channels (common.embed and embed_backward),
    and the bit-wise sigmoid cross-entropy (common.sigmoid_cross_entropy) on the answer
    steps of a mask, its logits spread wide (about +-6) so that both tails of the sigmoid
    are in play."""
    C = bits + 2
    product = {"x": (rng.random((B, C)) < 0.5) + 0.0, "Wx": rng.standard_normal((C, 4 * H))}
    targets = (rng.random((T, B, bits)) < 0.5) + 0.0
    mask = rng.random((T, B)) < 0.6
    mask[0] = True  # some answer step in every row
    logits = {"logits": 3 * rng.standard_normal((T, B, bits))}

    def product_backward(douts, cache):
        return {"x": douts[0] @ product["Wx"].T, "Wx": common.embed_backward(product["x"], douts[0], C)}

    def loss_forward(I):
        loss, dlogits = common.sigmoid_cross_entropy(I["logits"], targets, mask)
        return np.array(loss), dlogits  # the loss, and its gradient as the cache

    return [
        ("input product of bit channels, x W_x", product,
         lambda I: (common.embed(I["x"], I["Wx"]), None), product_backward),
        ("bit-wise sigmoid cross-entropy, masked", logits, loss_forward,
         lambda douts, dlogits: {"logits": douts[0] * dlogits}),
    ]


def as_tuple(out):
    return out if isinstance(out, tuple) else (out,)


def check_allocation_doubling(B, rng, sizes=(1, 2, 5, 6, 16, 33), tol=1e-12):
    """allocation_backward (recursive doubling) against allocation_backward_loop, the plain
    reverse loop it solves, on random usages and adjoints. -> True if they agree"""
    print("-- allocation: recursive doubling equals the plain reverse loop --")
    worst = 0.0
    for n in sizes:
        _, cache = dnc.allocation_forward(rng.random((B, n)))
        da = rng.standard_normal((B, n))
        fast, loop = dnc.allocation_backward(da, cache), dnc.allocation_backward_loop(da, cache)
        worst = max(worst, float(np.abs(fast - loop).max() / np.abs(loop).max()))
    ok = worst <= tol
    print(f"   N = {', '.join(map(str, sizes))}: largest difference {worst:.1e} of the largest entry "
          f"(bar {tol:.0e})  {'ok' if ok else 'DIFFERENT'}")
    return ok


def check_op(name, inputs, fwd, bwd, checks, rng, h, choices=None):
    """Central differences of loss = sum_k sum(out_k * G_k) against the op's backward.
    choices(cache), if given, names the op's discrete choices: a perturbation that changes
    them is skipped (common.gradcheck). -> worst relative error over its inputs, number of inputs"""
    outs, cache = fwd(inputs)
    outs = as_tuple(outs)
    G = [rng.standard_normal(o.shape) for o in outs]
    grads = bwd(tuple(G), cache)
    base = choices(cache) if choices else None

    def loss(I):
        outs, cache = fwd(I)
        if choices and not np.array_equal(choices(cache), base):
            return None
        return float(sum((o * g).sum() for o, g in zip(as_tuple(outs), G)))

    print(f"-- {name} --")
    return common.gradcheck(loss, inputs, grads, checks, rng, h=h, tol=TOL), len(inputs)


# ----------------------------------------------------------------------------------
# 2. The whole model with --stop-usage-grad, and with --sparse-links


def check_model_stop_usage_grad(cfg, V, B, S, checks, seed):
    """The whole model with --stop-usage-grad (§8), every parameter, against central
    differences of the model whose gradient the flag gives: one in which the w^w_{t-1} of
    every usage update is a constant. The unperturbed forward records the w^w_{t-1} that
    each call of usage_forward receives, and every perturbed forward hands the recorded
    ones to it instead (dnc.usage_forward is swapped for each forward, and put back).
    From a carried state, on random characters, as common.check_model_gradients does.
    -> worst relative error, number of parameters"""
    cfg = dict(cfg, stop_usage_grad=True)
    rng = np.random.default_rng(seed)
    params = dnc.init_params(cfg, V, rng, np.float64)
    for v in params.values():  # move off the tidy initial values
        v += 0.1 * rng.standard_normal(v.shape)
    ids = rng.integers(0, V, size=(2 * S + 1, B))
    _, state, _ = dnc.forward(params, ids[:S], dnc.init_state(cfg, params, B), cfg)  # warm-up: a carried state
    inputs, targets = ids[S:2 * S], ids[S + 1:]
    real, recorded = dnc.usage_forward, []

    def forward(p, usage):  # the window with usage_forward swapped for `usage`, the same dropout masks
        dnc.usage_forward = usage
        try:
            masks = np.random.default_rng(seed + 1) if cfg["dropout"] else None
            return dnc.forward(p, inputs, common.copy_state(state), cfg, masks)
        finally:
            dnc.usage_forward = real

    def recording(u_prev, ww_prev, psi):
        recorded.append(ww_prev)
        return real(u_prev, ww_prev, psi)

    logits, _, cache = forward(params, recording)
    grads = dnc.backward(common.cross_entropy(logits, targets)[1], cache)
    base = dnc.discrete_choices(cache)

    def loss_fn(p):
        constants = iter(recorded)
        logits, _, cache = forward(p, lambda u_prev, ww_prev, psi: real(u_prev, next(constants), psi))
        if not np.array_equal(dnc.discrete_choices(cache), base):
            return None  # a sort order changed: skipped, as in common.check_model_gradients
        return common.cross_entropy(logits, targets)[0]

    return common.gradcheck(loss_fn, params, grads, checks, rng, tol=TOL), len(params)


# ----------------------------------------------------------------------------------
# 3. Invariants, 4. direction, 5. no NaN


def run_steps(cfg, V, T, B, rng, strength_shift=0.0, prepare=None):
    """T steps of the model with random parameters on random characters, zero initial
    state. -> params, list of (new state, memory_forward's cache: a list of Block) per step"""
    params = dnc.init_params(cfg, V, rng, np.float64)
    for v in params.values():
        v += 0.3 * rng.standard_normal(v.shape)
    R, W = cfg["reads"], cfg["width"]
    params["bxi"][R * W:R * W + R] += strength_shift  # raw read strengths
    params["bxi"][R * W + R + W] += strength_shift  # raw write strength
    at = dnc.interface_layout(R, W, cfg.get("sharpen", False), cfg.get("mask", False))
    if cfg.get("sharpen"):  # and the raw sharpnesses of --sharpen
        params["bxi"][at["forward_sharpness"]] += strength_shift
        params["bxi"][at["backward_sharpness"]] += strength_shift
    if prepare is not None:
        prepare(params)
    state = dnc.init_state(cfg, params, B)
    out = []
    for x in rng.integers(0, V, (T, B)):
        _, _, state, cache = dnc.dnc_step_forward(params, x, state, cfg)
        out.append((state, cache.memory))
    return params, out


def check_invariants(cfg, rng):
    """With --sparse-links, the gates opened (dnc.open_gates), so that links pass the threshold."""
    _, run = run_steps(cfg, 7, 30, 4, rng, prepare=dnc.open_gates(cfg) if cfg.get("sparse_links") else None)
    tol = 1e-12
    worst = {"read weighting sum - 1": -1.0, "write weighting sum - write gate": -1.0,
             "allocation sum - 1": -1.0, "precedence sum - 1": -1.0, "link outside [0, 1]": 0.0,
             "link diagonal": 0.0, "usage outside [0, 1]": 0.0}
    if cfg.get("sharpen"):
        worst["sharpened weightings |sum - 1|"] = 0.0
    K = cfg.get("sparse_links")
    if K:  # --sparse-links (§4.4): at most K links in a row and in a column, rows and columns sum to at most 1
        worst.update({"links per row or column - K": -1.0, "link row or column sum - 1": -1.0})
    for state, blocks in run:  # the step's memory cache: memory_forward's blocks of batch rows, in order
        if cfg.get("sharpen"):  # S(f, s) and S(b, s) of every head sum to 1 (§4.1)
            sums = np.concatenate([[c.sharpen[0].sharp.sum(-1), c.sharpen[1].sharp.sum(-1)] for _, c in blocks], 1)
            worst["sharpened weightings |sum - 1|"] = max(worst["sharpened weightings |sum - 1|"],
                                                          np.abs(sums - 1).max())
        alloc = np.concatenate([c.write_weighting.alloc for _, c in blocks])  # a_t (B, N)
        gw = np.concatenate([c.write_weighting.gw for _, c in blocks])  # g^w (B, 1)
        L, u = (dnc.dense_links(state["L_idx"], state["L_val"]) if K else state["L"]), state["u"]
        if K:
            most = max((L > 0).sum(1).max(), (L > 0).sum(2).max())
            worst["links per row or column - K"] = max(worst["links per row or column - K"], most - K)
            worst["link row or column sum - 1"] = max(worst["link row or column sum - 1"], L.sum(1).max() - 1,
                                                      L.sum(2).max() - 1)
        worst["read weighting sum - 1"] = max(worst["read weighting sum - 1"], (state["wr"].sum(-1) - 1).max())
        worst["write weighting sum - write gate"] = max(worst["write weighting sum - write gate"],
                                                        (state["ww"].sum(-1) - gw[:, 0]).max())
        worst["allocation sum - 1"] = max(worst["allocation sum - 1"], (alloc.sum(-1) - 1).max())
        worst["precedence sum - 1"] = max(worst["precedence sum - 1"], (state["p"].sum(-1) - 1).max())
        worst["link outside [0, 1]"] = max(worst["link outside [0, 1]"], -L.min(), L.max() - 1)
        worst["link diagonal"] = max(worst["link diagonal"], np.abs(np.diagonal(L, axis1=1, axis2=2)).max())
        worst["usage outside [0, 1]"] = max(worst["usage outside [0, 1]"], -u.min(), u.max() - 1)
    ok = True
    for name, value in worst.items():
        good = value <= tol
        ok &= good
        print(f"{name:34s} worst {value: .3e}  {'ok' if good else 'VIOLATED'}")
    return ok


def check_direction(N=5):
    """Write slots 0, 1, 2 in turn with one-hot write weightings."""
    L, p = np.zeros((1, N, N)), np.zeros((1, N))
    for slot in (0, 1, 2):
        ww = np.eye(N)[[slot]]
        L, _ = dnc.link_forward(L, ww, p)
        p, _ = dnc.precedence_forward(p, ww)
    fwd, _, _ = dnc.directional_forward(L, np.eye(N)[[0]][:, None, :])
    _, bwd, _ = dnc.directional_forward(L, np.eye(N)[[1]][:, None, :])
    ok = np.allclose(fwd[0, 0], np.eye(N)[1]) and np.allclose(bwd[0, 0], np.eye(N)[0])
    print(f"forward from slot 0 -> {np.round(fwd[0, 0], 6)}  (want slot 1)")
    print(f"backward from slot 1 -> {np.round(bwd[0, 0], 6)}  (want slot 0)")
    print("direction " + ("ok" if ok else "WRONG"))
    return ok


def flags(cfg):
    """The options a configuration has on, as typed: '--sharpen --mask', '--sparse-links 3', or ''."""
    on = [f"--{name}" for name in ("sharpen", "mask", "dealloc") if cfg.get(name)]
    return " ".join(on + ([f"--sparse-links {cfg['sparse_links']}"] if cfg.get("sparse_links") else []))


def check_no_nan(cfg, rng):
    B, N, W = 3, cfg["memory"], cfg["width"]
    M = rng.standard_normal((B, N, W))
    M[:, :2] = 0  # all-zero rows
    k = np.zeros((B, 2, W))
    k[:, 1] = rng.standard_normal((B, W))  # a zero key and a normal one
    C, cache = dnc.content_forward(M, k, np.full((B, 2), 1e4))
    grads = dnc.content_backward(rng.standard_normal(C.shape), cache)
    finite = [np.isfinite(C).all()] + [np.isfinite(g).all() for g in grads]
    # a whole model with huge strengths, starting from an all-zero memory, through the loss
    params, run = run_steps(cfg, 7, 8, B, rng, strength_shift=1e4)
    finite += [np.isfinite(v).all() for state, _ in run for v in state.values()]
    ids = rng.integers(0, 7, (9, B))
    loss, grads, _ = common.loss_and_grads(dnc, params, ids[:-1], ids[1:], dnc.init_state(cfg, params, B), cfg)
    finite += [np.isfinite(loss)] + [np.isfinite(g).all() for g in grads.values()]
    ok = all(finite)
    print(f"{flags(cfg) + ': ' if flags(cfg) else ''}zero memory rows, zero key, strengths "
          f"{'and sharpnesses ' if cfg.get('sharpen') else ''}1e4: {len(finite)} arrays checked, "
          + ("all finite" if ok else "NON-FINITE VALUES"))
    return ok


# ----------------------------------------------------------------------------------


def main(argv=None):
    p = common.Parser(prog="dnc-debug.py", description=__doc__.split("\n\n")[0],
                      formatter_class=common.HelpFormatter)
    p.add_argument("--hidden", type=common.positive_int, default=6, help="H, controller units")
    p.add_argument("--controller", choices=dnc.CONTROLLERS, help="the controller of the whole-model check "
                   "(default: each in turn)")
    p.add_argument("--layers", type=common.positive_int, help="controller layers of the whole-model check "
                   "(default: 1, then 2)")
    p.add_argument("--dropout", type=common.fraction, default=0.25, metavar="P",
                   help="dropout of the whole-model check, between layers and before the output")
    p.add_argument("--memory", type=common.positive_int, default=6, help="N, memory slots")
    p.add_argument("--width", type=common.positive_int, default=4, help="W, word width")
    p.add_argument("--reads", type=common.positive_int, default=2, help="R, read heads")
    p.add_argument("--batch", type=common.positive_int, default=2, help="B")
    p.add_argument("--seq", type=common.positive_int, default=5, help="S, steps of the whole-model check")
    p.add_argument("--seed", type=common.nonneg_int, default=0, help="fixes the random parameters and inputs")
    p.add_argument("--checks", type=common.positive_int, default=10, help="entries checked per tensor")
    p.add_argument("--block-floats", type=common.positive_int, default=dnc.BLOCK_FLOATS,
                   help="floats of a block's (rows, N, N) array in the model's memory steps (N * N: one row)")
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    B, N, W, R = args.batch, args.memory, args.width, args.reads
    controllers = [args.controller] if args.controller else list(dnc.CONTROLLERS)
    layer_counts = [args.layers] if args.layers else [1, 2]
    cfgs = [{"hidden": args.hidden, "layers": layers, "controller": controller, "memory": N, "width": W,
             "reads": R, "stop_usage_grad": False, "sharpen": sharpen, "mask": False, "dealloc": False,
             "dropout": args.dropout, "block_floats": args.block_floats}
            for sharpen in (False, True) for controller in controllers for layers in layer_counts]
    # --mask and --dealloc (§4.2, §4.3): two configurations more, not the whole product again: the
    # first controller and layer count with both, the last with both and --sharpen
    refined = [dict(cfgs[0], mask=True, dealloc=True), dict(cfgs[-1], mask=True, dealloc=True)]
    cfgs += refined

    worst, count = 0.0, 0
    print(f"== 1. memory operations, a controller layer and the bit form against central differences "
          f"(B={B}, N={N}, W={W}, R={R}, H={args.hidden}) ==")
    ops = [(*op, None) for op in memory_ops(B, N, W, R, rng)] + sparse_link_ops(B, N, W, R, rng) \
        + [(*op, None) for op in controller_ops(B, args.hidden, rng) + bit_ops(B, args.hidden, rng)]
    for name, inputs, fwd, bwd, choices in ops:
        # the all-zero memory row makes the lookup 1/sqrt(eps) sharp: a smaller h there (§10)
        h = 1e-7 if name in ("allocation", "content weighting") else 1e-6
        e, n = check_op(name, inputs, fwd, bwd, args.checks, rng, h, choices)
        print(f"   max relative error {e:.3e}")
        worst, count = max(worst, e), count + n
    ok = check_allocation_doubling(B, rng)

    print(f"\n== 2. the whole model over {args.seq} steps, every parameter ==")
    task = tasks.make_task("repeat-copy", bits=3, min_length=1, max_length=2, max_repeats=2)  # the bit form
    for cfg in cfgs:
        print(f"-- {cfg} --")
        e, n = common.check_model_gradients(dnc, cfg, V=7, B=B, S=args.seq, checks=args.checks, seed=args.seed,
                                            tol=TOL)
        print(f"   max relative error {e:.3e}")
        worst, count = max(worst, e), count + n
        print(f"-- the same on {task.name} episodes in the bit form ({task.V_in} channels in, {task.V_out} out), "
              f"the bit-wise loss{''.join(', ' + f for f in [flags(cfg)] if f)} --")
        episodes = task.episodes(np.random.default_rng(args.seed), B)
        e, n = common.check_model_gradients(dnc, cfg, V=task.V_in, V_out=task.V_out, checks=args.checks,
                                            seed=args.seed, tol=TOL, episodes=episodes,
                                            loss=common.sigmoid_cross_entropy)
        print(f"   max relative error {e:.3e}")
        worst, count = max(worst, e), count + n
    sharp = [cfg for cfg in cfgs if cfg["sharpen"] and not cfg["mask"]]
    # the first and the last with --sharpen, and the last with all three, with --stop-usage-grad too
    for cfg in [sharp[0]] + sharp[1:][-1:] + refined[-1:]:
        print(f"-- {dict(cfg, stop_usage_grad=True)}, against a forward whose usage takes "
              f"w^w_{{t-1}} as a constant --")
        e, n = check_model_stop_usage_grad(cfg, V=7, B=B, S=args.seq, checks=args.checks, seed=args.seed)
        print(f"   max relative error {e:.3e}")
        worst, count = max(worst, e), count + n

    # --sparse-links K < N (§4.4): the first configuration on characters, the last (with --sharpen
    # too) on bit-form episodes, the gates opened so that writes are sharp and links pass 1/K
    sparse = [dict(cfgs[0], sparse_links=max(1, N // 2)), dict(cfgs[-1], sparse_links=max(1, N // 2))]
    for cfg, episodes in zip(sparse, (None, task.episodes(np.random.default_rng(args.seed), B))):
        on = "characters" if episodes is None else f"{task.name} episodes in the bit form"
        print(f"-- {cfg}, on {on}, the write and allocation gates opened --")
        bits = {} if episodes is None else {"V": task.V_in, "V_out": task.V_out, "episodes": episodes,
                                             "loss": common.sigmoid_cross_entropy}
        e, n = common.check_model_gradients(dnc, cfg, **{"V": 7, "B": B, "S": args.seq, **bits}, checks=args.checks,
                                            seed=args.seed, tol=TOL, prepare=dnc.open_gates(cfg))
        print(f"   max relative error {e:.3e}")
        worst, count = max(worst, e), count + n

    first = cfgs[0]  # the first controller and layer count, for the invariants and the NaN hunt
    print(f"\n== 3. invariants over 30 steps, {first['controller']} controller ==")
    for cfg in (first, sharp[0], refined[-1], sparse[0]):
        print(f"-- {flags(cfg) or 'the plain DNC'} --")
        ok &= check_invariants(cfg, rng)
    print("\n== 4. direction of the temporal links ==")
    ok &= check_direction()
    print("\n== 5. zero memory rows and very large strengths (and sharpnesses) ==")
    for cfg in (first, sharp[0], refined[-1], sparse[0]):
        ok &= check_no_nan(cfg, rng)

    passed = common.gradcheck_verdict(worst, count, TOL) and ok
    if not ok:
        print("the allocation's doubling, an invariant, the direction or finiteness failed (see above)")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
