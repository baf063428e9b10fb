#!/usr/bin/env python3
"""One training step's phases computed by the reference (stylegan2-ada-pytorch), dumped to HDF5.

Runs the reference's Generator and Discriminator (its defaults for mixed precision: num_fp16_res 4,
conv_clamp 256; --fp32 sets num_fp16_res 0) on one fixed small configuration with fixed seeds and
writes the parameters (reference state_dict keys), the inputs, the losses and the parameter
gradients of each phase of loss.py's accumulate_gradients, so that the GpuFp16Reference test of
styleforge_tests recomputes the same phases with the same parameters and compares. To make the
phases reproducible across implementations, the randomness loss.py draws is fixed here: synthesis
noise is the stored noise_const (noise_mode='const'), no style mixing, no augmentation, the mapping
does not update w_avg, and the path-length noise is an input.

Phases (gain 1, grads zeroed before each):
  Gmain  loss_Gmain = mean(softplus(-D(G(z_g)))), grads of G
  Greg   path length on the first batch/2 of z_g (pl_decay 0.01, pl_weight 2, pl_mean a constant),
         grads of G: d mean(pl_penalty * 2)
  Dmain  mean(softplus(D(G(z_d).detach()))) + mean(softplus(-D(real))), grads of D
  Dreg   R1: r1_penalty = sum over CHW of (d sum(D(real)) / d real)^2, grads of d mean(r1 * gamma/2)

  python3 tests/gpu/fp16_reference.py --reference .gpudeps/reference --device cuda --out /tmp/fp16.h5
  python3 tests/gpu/fp16_reference.py --reference ~/stylegan2-ada-pytorch --device cpu --fp32 --out /tmp/f32.h5
"""
import argparse
import json
import os
import sys

CONFIG = dict(img_resolution=64, img_channels=3, z_dim=512, w_dim=512, c_dim=0, mapping_layers=2,
              channel_base=4096, channel_max=256, g_architecture='skip', d_architecture='resnet',
              mbstd_group_size=4, mbstd_num_channels=1, conv_clamp=256.0, num_fp16_res=4, batch=4,
              r1_gamma=0.2048, pl_weight=2.0, pl_decay=0.01, seed=7)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--reference', required=True, help='checkout of NVlabs/stylegan2-ada-pytorch')
    ap.add_argument('--device', default='cuda')
    ap.add_argument('--fp32', action='store_true', help='num_fp16_res 0 (everything float32)')
    ap.add_argument('--out', required=True)
    args = ap.parse_args()
    sys.path.insert(0, os.path.abspath(args.reference))
    import types
    try:
        import requests  # noqa: F401  (dnnlib.util imports it for downloads; nothing is downloaded here)
    except ImportError:
        sys.modules['requests'] = types.ModuleType('requests')
    try:
        import distutils.util  # noqa: F401  (dnnlib.util's strtobool; gone from Python 3.12 without setuptools)
    except ImportError:
        util = types.ModuleType('distutils.util')
        util.strtobool = lambda v: 1 if str(v).lower() in ('y', 'yes', 't', 'true', 'on', '1') else 0
        pkg = types.ModuleType('distutils')
        pkg.util = util
        sys.modules.update({'distutils': pkg, 'distutils.util': util})
    import h5py
    import numpy as np
    import torch
    import torch.nn.functional as F
    from training import networks

    cfg = dict(CONFIG)
    if args.fp32:
        cfg['num_fp16_res'] = 0
    dev = torch.device(args.device)
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(cfg['seed'])
    common = dict(channel_base=cfg['channel_base'], channel_max=cfg['channel_max'], num_fp16_res=cfg['num_fp16_res'],
                  conv_clamp=cfg['conv_clamp'])
    G = networks.Generator(z_dim=cfg['z_dim'], c_dim=0, w_dim=cfg['w_dim'], img_resolution=cfg['img_resolution'],
                           img_channels=cfg['img_channels'], mapping_kwargs=dict(num_layers=cfg['mapping_layers']),
                           synthesis_kwargs=dict(architecture=cfg['g_architecture'], **common)).to(dev).train()
    D = networks.Discriminator(c_dim=0, img_resolution=cfg['img_resolution'], img_channels=cfg['img_channels'],
                               architecture=cfg['d_architecture'],
                               epilogue_kwargs=dict(mbstd_group_size=cfg['mbstd_group_size'],
                                                    mbstd_num_channels=cfg['mbstd_num_channels']),
                               **common).to(dev).train()
    gen = torch.Generator().manual_seed(cfg['seed'] + 1)
    with torch.no_grad():  # non-zero biases, noise strengths and w_avg so that every term is exercised
        for name, p in list(G.named_parameters()) + list(D.named_parameters()):
            if name.endswith('bias') or name.endswith('noise_strength'):
                p.copy_((torch.randn(p.shape, generator=gen) * 0.1).to(dev))
        G.mapping.w_avg.copy_(torch.randn(G.mapping.w_avg.shape, generator=gen).to(dev))
    n, R, C = cfg['batch'], cfg['img_resolution'], cfg['img_channels']
    inputs = dict(z_g=torch.randn([n, cfg['z_dim']], generator=gen), z_d=torch.randn([n, cfg['z_dim']], generator=gen),
                  real=torch.randn([n, C, R, R], generator=gen),
                  pl_noise=torch.randn([n // 2, C, R, R], generator=gen) / (R * R) ** 0.5,
                  pl_mean_in=torch.tensor(0.5))
    x = {k: v.to(dev) for k, v in inputs.items()}
    c = torch.zeros([n, 0], device=dev)
    params = {'G': {k: v.detach().cpu() for k, v in G.state_dict().items()},
              'D': {k: v.detach().cpu() for k, v in D.state_dict().items()}}

    def run_G(z):
        return G.synthesis(G.mapping(z, c[:z.shape[0]], skip_w_avg_update=True), noise_mode='const')

    def grads(net):
        out = {k: p.grad.detach().float().cpu() for k, p in net.named_parameters() if p.grad is not None}
        net.zero_grad(set_to_none=True)
        return out

    outputs, all_grads = {}, {}
    G.zero_grad(set_to_none=True), D.zero_grad(set_to_none=True)
    img = run_G(x['z_g'])
    outputs['gen_img'] = img
    loss = F.softplus(-D(img, c))
    outputs['loss_Gmain'] = loss
    loss.mean().backward()
    all_grads['Gmain'] = grads(G)
    D.zero_grad(set_to_none=True)

    zp = x['z_g'][:n // 2]
    ws = G.mapping(zp, c[:n // 2], skip_w_avg_update=True)
    img = G.synthesis(ws, noise_mode='const')
    (ws_grad,) = torch.autograd.grad([(img * x['pl_noise']).sum()], [ws], create_graph=True)
    lengths = ws_grad.square().sum(2).mean(1).sqrt()
    pl_mean = x['pl_mean_in'].lerp(lengths.mean(), cfg['pl_decay'])
    penalty = (lengths - pl_mean.detach()).square()
    (penalty * cfg['pl_weight']).mean().backward()
    outputs.update(pl_lengths=lengths, pl_penalty=penalty, pl_mean_out=pl_mean)
    all_grads['Greg'] = grads(G)

    with torch.no_grad():
        fake = run_G(x['z_d'])
    loss_gen = F.softplus(D(fake, c))
    loss_real = F.softplus(-D(x['real'], c))
    (loss_gen.mean() + loss_real.mean()).backward()
    outputs.update(loss_Dgen=loss_gen, loss_Dreal=loss_real)
    all_grads['Dmain'] = grads(D)

    real = x['real'].detach().requires_grad_(True)
    logits = D(real, c)
    (rg,) = torch.autograd.grad([logits.sum()], [real], create_graph=True)
    r1 = rg.square().sum([1, 2, 3])
    (r1 * (cfg['r1_gamma'] / 2)).mean().backward()
    outputs['r1_penalty'] = r1
    all_grads['Dreg'] = grads(D)

    with h5py.File(args.out, 'w') as f:
        f.attrs['config'] = json.dumps(cfg)
        f.attrs['device'] = str(dev) + (' ' + torch.cuda.get_device_name(dev) if dev.type == 'cuda' else '')
        f.attrs['torch'] = str(torch.__version__)
        for net, d in params.items():
            for k, v in d.items():
                f[f'params/{net}/{k}'] = v.float().numpy() if v.is_floating_point() else v.numpy()
        for k, v in inputs.items():
            f[f'inputs/{k}'] = v.numpy()
        for k, v in outputs.items():
            f[f'outputs/{k}'] = v.detach().float().cpu().numpy()
        for phase, d in all_grads.items():
            for k, v in d.items():
                f[f'grads/{phase}/{k}'] = v.numpy()
    summary = ', '.join(f'{k} {float(v.float().mean()):.6g}' for k, v in outputs.items() if k != 'gen_img')
    print(f'{args.out}: reference on {dev}, num_fp16_res {cfg["num_fp16_res"]}: {summary}; '
          f'{sum(len(d) for d in all_grads.values())} gradients')


if __name__ == '__main__':
    main()
