#!/usr/bin/python3
"""How far the reference implementation itself lands from a fixture, across CPU settings.

`styleforge selftest` compares our float32 results with golden files written by the reference
(stylegan2-ada-pytorch) on some other machine. For a few datasets (gradients that come from
cancellation, e.g. the bias gradients of an R1 penalty, or a scalar noise_strength gradient of the
path-length penalty) float32 rounding alone moves the result by more than the 1e-5 tolerance. This
tool measures that directly: it runs the reference's own networks on the fixture's params and
inputs, under every combination of thread count (1, 2), oneDNN on/off, ATen CPU capability
(avx2, avx512) and BLAS (OpenBLAS, Debian's reference BLAS), and prints the largest relative error
per setting. Compare it with the line `styleforge selftest` prints for the same file.

Needs Debian's python3-torch and python3-h5py (run with /usr/bin/python3) and a checkout of the
reference (git clone https://github.com/NVlabs/stylegan2-ada-pytorch). Kinds: r1, path_length.

  /usr/bin/python3 tools/reference_spread.py --reference ~/stylegan2-ada-pytorch \
      ../shared/fixtures/d32_resnet_rgb_r1.h5 ../shared/fixtures/g32_skip_rgb_pathlen.h5
"""
import argparse
import itertools
import json
import os
import subprocess
import sys

NETLIB_BLAS = '/usr/lib/x86_64-linux-gnu/blas'


def rel_err(ours, ref):
    import numpy as np
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    den = np.linalg.norm(ref)
    return float(np.linalg.norm(ours - ref) / den) if den > 0 else float(np.linalg.norm(ours))


def load_params(module, group):
    import numpy as np
    import torch
    state = module.state_dict()
    missing = [k for k in state if k not in group]
    if missing:
        sys.exit(f'fixture lacks params/{missing[0]} (and {len(missing) - 1} more)')
    for key, value in state.items():
        value.copy_(torch.from_numpy(np.asarray(group[key][()])))


def build_generator(networks, cfg):
    """The reference Generator for a fixture config (the keys the fixtures' `config` uses)."""
    return networks.Generator(
        z_dim=cfg['z_dim'], c_dim=cfg['c_dim'], w_dim=cfg['w_dim'], img_resolution=cfg['img_resolution'],
        img_channels=cfg['img_channels'], mapping_kwargs=dict(num_layers=cfg['mapping_layers']),
        synthesis_kwargs=dict(architecture=cfg['architecture'], channel_base=cfg['channel_base'],
                              channel_max=cfg['channel_max'], conv_clamp=cfg['conv_clamp']))


def build_discriminator(networks, cfg):
    """The reference Discriminator for a fixture config."""
    return networks.Discriminator(
        c_dim=cfg['c_dim'], img_resolution=cfg['img_resolution'], img_channels=cfg['img_channels'],
        architecture=cfg['architecture'], channel_base=cfg['channel_base'], channel_max=cfg['channel_max'],
        conv_clamp=cfg['conv_clamp'],
        epilogue_kwargs=dict(mbstd_group_size=cfg['mbstd_group_size'], mbstd_num_channels=cfg['mbstd_num_channels']))


def r1_step(torch, D, img, c, gamma):
    """R1 as the fixtures define it; leaves d/dparams mean(r1_penalty * gamma/2) in D's .grad."""
    logits = D(img, c)
    (img_grad,) = torch.autograd.grad([logits.sum()], [img], create_graph=True)
    penalty = img_grad.square().sum([1, 2, 3])
    (penalty * (gamma / 2)).mean().backward()
    return {'logits': logits, 'r1_penalty': penalty}


def path_length_step(torch, G, z, c, noise, pl_mean_in):
    """Path length as the fixtures define it (pl_decay 0.01, pl_weight 2, pl_mean a constant in the
    penalty); leaves d/dparams mean(pl_penalty * pl_weight) in G's .grad."""
    ws = G.mapping(z, c, skip_w_avg_update=True)
    img = G.synthesis(ws, noise_mode='const')
    (ws_grad,) = torch.autograd.grad([(img * noise).sum()], [ws], create_graph=True)
    lengths = ws_grad.square().sum(2).mean(1).sqrt()
    pl_mean = pl_mean_in.lerp(lengths.mean(), 0.01)
    penalty = (lengths - pl_mean.detach()).square()
    (penalty * 2).mean().backward()
    return {'pl_lengths': lengths, 'pl_penalty': penalty, 'pl_mean_out': pl_mean}


def run_r1(networks, f, cfg):
    import torch
    D = build_discriminator(networks, cfg)
    load_params(D, f['params'])
    img = torch.from_numpy(f['inputs/img'][()]).requires_grad_(True)
    c = torch.from_numpy(f['inputs/c'][()])
    return D, r1_step(torch, D, img, c, cfg['r1_gamma'])


def run_path_length(networks, f, cfg):
    import numpy as np
    import torch
    G = build_generator(networks, cfg)
    load_params(G, f['params'])
    inputs = [torch.from_numpy(np.asarray(f['inputs'][k][()])) for k in ('z', 'c', 'pl_noise', 'pl_mean_in')]
    return G, path_length_step(torch, G, *inputs)


def measure(reference, path):
    """Runs in a child process under the settings in its environment; prints one JSON line."""
    import h5py
    import torch
    sys.path.insert(0, reference)
    from training import networks
    torch.set_num_threads(int(os.environ['SPREAD_THREADS']))
    torch.backends.mkldnn.enabled = os.environ['SPREAD_ONEDNN'] == '1'
    with h5py.File(path, 'r') as f:
        kind = f.attrs['kind']
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        cfg = json.loads(f.attrs['config'])
        runner = {'r1': run_r1, 'path_length': run_path_length}.get(kind)
        if runner is None:
            print(json.dumps({'skip': f'kind {kind!r} not handled'}))
            return
        net, outs = runner(networks, f, cfg)
        errs = {f'outputs/{k}': rel_err(v.detach().numpy(), f['outputs'][k][()]) for k, v in outs.items()
                if k in f['outputs']}
        for name, p in net.named_parameters():
            if name in f['grads']:
                g = p.grad if p.grad is not None else torch.zeros_like(p)
                errs[f'grads/{name}'] = rel_err(g.numpy(), f['grads'][name][()])
    worst = max(errs, key=errs.get)
    print(json.dumps({'worst': worst, 'err': errs[worst], 'above_1e-5': sum(e > 1e-5 for e in errs.values())}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--reference', required=True, help='checkout of NVlabs/stylegan2-ada-pytorch')
    ap.add_argument('--measure', help=argparse.SUPPRESS)
    ap.add_argument('fixtures', nargs='+')
    args = ap.parse_args()
    if not os.path.isfile(os.path.join(args.reference, 'training', 'networks.py')):
        sys.exit(f'{args.reference}: not a stylegan2-ada-pytorch checkout (no training/networks.py)')
    if args.measure:
        measure(args.reference, args.measure)
        return
    blas_options = ['openblas'] + (['netlib'] if os.path.isdir(NETLIB_BLAS) else [])
    for path in args.fixtures:
        if not os.path.isfile(path):
            sys.exit(f'{path}: no such file')
        print(path)
        spread = []
        for blas, cap, threads, onednn in itertools.product(blas_options, ['avx2', 'avx512'], [1, 2], [1, 0]):
            env = dict(os.environ, ATEN_CPU_CAPABILITY=cap, OMP_NUM_THREADS=str(threads),
                       SPREAD_THREADS=str(threads), SPREAD_ONEDNN=str(onednn))
            if blas == 'netlib':
                env['LD_LIBRARY_PATH'] = NETLIB_BLAS
            else:
                env.pop('LD_LIBRARY_PATH', None)
            proc = subprocess.run([sys.executable, __file__, '--reference', args.reference, '--measure', path, path],
                                  env=env, capture_output=True, text=True)
            lines = [l for l in proc.stdout.splitlines() if l.startswith('{')]
            if proc.returncode != 0 or not lines:
                last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else 'no output'
                sys.exit(f'{path}: reference run failed ({blas} {cap} threads={threads} onednn={onednn}): {last}')
            r = json.loads(lines[-1])
            if 'skip' in r:
                print(f'  {r["skip"]}')
                break
            spread.append(r['err'])
            print(f'  {blas:8s} {cap:6s} threads={threads} onednn={onednn}: max rel err {r["err"]:.2e} '
                  f'({r["worst"]}), {r["above_1e-5"]} above 1e-5')
        if spread:
            print(f'  reference itself: {min(spread):.2e} .. {max(spread):.2e} over {len(spread)} settings')


if __name__ == '__main__':
    main()
