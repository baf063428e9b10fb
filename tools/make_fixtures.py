#!/usr/bin/python3
"""Writes reference fixtures for other shapes and options, in the layout of ../shared/fixtures.

`styleforge selftest --fixtures DIR` must handle any folder of fixtures of the kinds generator,
path_length, discriminator and r1, not only the shared ones. This tool runs the reference
implementation (a checkout of NVlabs/stylegan2-ada-pytorch, with Debian's python3-torch and
python3-h5py under /usr/bin/python3) on random parameters and inputs and writes one HDF5 file per
case with the same attributes (kind, config, notes, reference), groups (params/, inputs/, outputs/,
grads/) and `how` phrases as the shared fixtures. Parameters are randomised (biases, noise
strengths, w_avg, constants) so that every term is exercised; they are stored as they were before
any w_avg update.

  /usr/bin/python3 tools/make_fixtures.py --reference ~/stylegan2-ada-pytorch --out /tmp/more_fixtures
  build/styleforge selftest --fixtures /tmp/more_fixtures

With --pickle RES,CBASE,C_DIM,CHANNELS it instead writes one reference network pickle of that size
(pickled by the reference's own persistence, embedded source included — the format of the published
FFHQ/AFHQ/BreCaHaD snapshots: G, D, G_ema, augment_pipe, training_set_kwargs), for trying
`styleforge import` and `train --resume FILE.pkl` on full-size networks, e.g. --pickle 256,16384,0,3
(FFHQ-256-like, 23.2M G parameters, 283 MB) or --pickle 1024,32768,0,3. --compare PKL H5 loads the
pickle with the reference's loader and checks every tensor of G, D, G_ema and augment p against
a checkpoint written by `styleforge import` (exit 1 on any difference).

With --recompute FILE..., it instead copies existing fixtures of kind r1 or path_length into --out
and rewrites their outputs/ and grads/ with the reference run here, on one thread: the same
parameters and inputs, this machine's rounding. `styleforge selftest --strict --threads 1` on that
folder then compares with the reference on equal terms.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_spread  # noqa: E402  (network builders and the R1/path-length steps, shared)

# Cases: (file stem, kind, config). They cover what the shared fixtures do not: the orig and resnet
# generators, skip and orig discriminators, 8² and 64², mbstd with 2 channels or one group for the
# whole batch, no conv_clamp and a large one, short mapping networks, odd z/w/c sizes.
CASES = [
    ('g32_orig_rgb', 'generator', dict(architecture='orig', c_dim=0, channel_base=2048, channel_max=64, conv_clamp=None,
                                      img_channels=3, img_resolution=32, mapping_layers=2, w_dim=40, z_dim=24)),
    ('g16_resnet_gray_cond', 'generator', dict(architecture='resnet', c_dim=5, channel_base=1024, channel_max=32,
                                              conv_clamp=256.0, img_channels=1, img_resolution=16, mapping_layers=3,
                                              w_dim=32, z_dim=16)),
    ('g64_skip_rgb_cond_clamp', 'generator', dict(architecture='skip', c_dim=2, channel_base=1024, channel_max=32,
                                                 conv_clamp=1.0, img_channels=3, img_resolution=64,
                                                 mapping_layers=2, w_dim=32, z_dim=32)),
    ('g8_orig_gray_pathlen', 'path_length', dict(architecture='orig', c_dim=0, channel_base=512, channel_max=32,
                                                conv_clamp=None, img_channels=1, img_resolution=8, mapping_layers=2,
                                                w_dim=16, z_dim=16)),
    ('g16_resnet_rgb_cond_pathlen', 'path_length', dict(architecture='resnet', c_dim=3, channel_base=1024,
                                                        channel_max=32, conv_clamp=1.0, img_channels=3,
                                                        img_resolution=16, mapping_layers=2, w_dim=32, z_dim=32)),
    ('d32_skip_rgb_mbstd2ch', 'discriminator', dict(architecture='skip', c_dim=0, channel_base=2048, channel_max=64,
                                                   conv_clamp=None, img_channels=3, img_resolution=32,
                                                   mbstd_group_size=2, mbstd_num_channels=2)),
    ('d16_orig_gray_cond', 'discriminator', dict(architecture='orig', c_dim=4, channel_base=1024, channel_max=32,
                                                conv_clamp=256.0, img_channels=1, img_resolution=16,
                                                mbstd_group_size=4, mbstd_num_channels=1)),
    ('d64_resnet_gray_clamp', 'discriminator', dict(architecture='resnet', c_dim=0, channel_base=1024,
                                                   channel_max=32, conv_clamp=1.0, img_channels=1,
                                                   img_resolution=64, mbstd_group_size=4, mbstd_num_channels=1)),
    ('d8_skip_rgb_cond_r1', 'r1', dict(architecture='skip', c_dim=3, channel_base=512, channel_max=32, conv_clamp=None,
                                      img_channels=3, img_resolution=8, mbstd_group_size=4, mbstd_num_channels=1,
                                      r1_gamma=10.0)),
    ('d16_orig_gray_r1', 'r1', dict(architecture='orig', c_dim=0, channel_base=1024, channel_max=32, conv_clamp=1.0,
                                   img_channels=1, img_resolution=16, mbstd_group_size=2, mbstd_num_channels=2,
                                   r1_gamma=0.5)),
]
BATCH = 4

# Op cases (kind ops): (file stem, filter taps, [(output name, call as the selftest reads it)]).
# The calls are evaluated by the reference's own functions with the same arguments.
OPS_CASES = [
    ('ops_filter121', [1, 2, 1], [
        ('up2_pad', 'upfirdn2d(x, f, up=2, down=1, padding=[1, 1, 1, 1], gain=4)'),
        ('down2_flip', 'upfirdn2d(x, f, up=1, down=2, padding=[0, 1, 1, 0], flip_filter=True)'),
        ('up3_down2_crop', 'upfirdn2d(x, f, up=3, down=2, padding=[2, -1, 1, 0], gain=9)'),
        ('upsample2d', 'upsample2d(x, f, up=2)'),
        ('downsample2d', 'downsample2d(x, f, down=2, padding=1)'),
        ('filter2d', 'filter2d(x, f, padding=1, gain=2)'),
        ('conv3x3_up2', 'conv2d_resample(x, w3, f, up=2, padding=1, flip_weight=False)'),
        ('conv3x3_down2', 'conv2d_resample(x, w3, f, down=2, padding=1)'),
        ('conv1x1_down2', 'conv2d_resample(x, w1, f, down=2)'),
        ('conv3x3_grouped_up2', 'conv2d_resample(x, wg, f, up=2, padding=1, groups=3, flip_weight=False)'),
        ('conv3x3_grouped', 'conv2d_resample(x, wg, f, padding=1, groups=3)'),
    ]),
    ('ops_bias_act_mbstd', [1, 3, 3, 1], [
        ('lrelu_clamp', "bias_act(x, b, act='lrelu', alpha=0.2, gain=1.4142135623730951, clamp=0.5)"),
        ('lrelu_alpha', "bias_act(x, b, act='lrelu', alpha=0.1)"),
        ('tanh', "bias_act(x, b, act='tanh')"),
        ('swish_clamp', "bias_act(x, b, act='swish', clamp=2)"),
        ('elu_nobias', "bias_act(x, act='elu')"),
        ('softplus_gain', "bias_act(x, b, act='softplus', gain=0.5)"),
        ('sigmoid_dim', "bias_act(xt, bt, dim=2, act='sigmoid')"),
        ('mbstd_g2_c1', 'minibatch_std(x, group_size=2, num_channels=1)'),
        ('mbstd_g4_c3', 'minibatch_std(x, group_size=4, num_channels=3)'),
        ('norm2nd', 'normalize_2nd_moment(z, dim=1)'),
    ]),
]


def randomise(torch, net, gen):
    """Moves every float tensor away from its constructor value (filters stay: they are constants)."""
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if not t.is_floating_point() or name.endswith('resample_filter'):
                continue
            if name.endswith('noise_strength'):
                t.copy_(0.3 * torch.randn(t.shape, generator=gen))
            elif name.endswith('.bias') or name.endswith('w_avg'):
                t.add_(0.2 * torch.randn(t.shape, generator=gen))
            else:
                t.mul_(1 + 0.1 * torch.randn(t.shape, generator=gen)).add_(0.02 * torch.randn(t.shape, generator=gen))


def snapshot_params(net):
    return {k: v.detach().clone().numpy() for k, v in net.state_dict().items()}


def param_grads(torch, net):
    return {k: (p.grad if p.grad is not None else torch.zeros_like(p)).detach().numpy()
            for k, p in net.named_parameters()}


def labels(torch, n, c_dim, gen):
    if c_dim == 0:
        return torch.zeros([n, 0])
    return torch.nn.functional.one_hot(torch.randint(0, c_dim, [n], generator=gen), c_dim).float()


def new_generator(torch, networks, cfg, gen):
    """A generator with randomised parameters, those parameters, and inputs z and c."""
    G = reference_spread.build_generator(networks, cfg)
    randomise(torch, G, gen)
    z = torch.randn([BATCH, cfg['z_dim']], generator=gen)
    return G, snapshot_params(G), z, labels(torch, BATCH, cfg['c_dim'], gen)


def new_discriminator(torch, networks, cfg, gen):
    """A discriminator with randomised parameters, those parameters, and inputs img (requiring grad) and c."""
    D = reference_spread.build_discriminator(networks, cfg)
    randomise(torch, D, gen)
    R, C = cfg['img_resolution'], cfg['img_channels']
    img = torch.randn([BATCH, C, R, R], generator=gen).requires_grad_(True)
    return D, snapshot_params(D), img, labels(torch, BATCH, cfg['c_dim'], gen)


def case_generator(torch, networks, cfg, gen):
    G, params, z, c = new_generator(torch, networks, cfg, gen)
    R, C = cfg['img_resolution'], cfg['img_channels']
    probe = torch.randn([BATCH, C, R, R], generator=gen)
    num_ws = G.num_ws
    cutoff = max(1, num_ws // 2)
    out, how = {}, {}
    G.eval()
    with torch.no_grad():
        out['ws'] = G.mapping(z, c, truncation_psi=1)
        how['ws'] = 'eval mode: mapping(z, c), truncation_psi=1'
        out['ws_trunc'] = G.mapping(z, c, truncation_psi=0.7)
        how['ws_trunc'] = 'eval mode: mapping(z, c, truncation_psi=0.7)'
        out['ws_trunc_cutoff'] = G.mapping(z, c, truncation_psi=0.5, truncation_cutoff=cutoff)
        how['ws_trunc_cutoff'] = f'eval mode: mapping(z, c, truncation_psi=0.5, truncation_cutoff={cutoff})'
        out['img_const'] = G.synthesis(out['ws'], noise_mode='const')
        how['img_const'] = 'eval mode: synthesis(ws, noise_mode=const)'
        out['img_none'] = G.synthesis(out['ws'], noise_mode='none')
        how['img_none'] = 'eval mode: synthesis(ws, noise_mode=none)'
        out['img_trunc_const'] = G.synthesis(out['ws_trunc'], noise_mode='const')
        how['img_trunc_const'] = 'eval mode: synthesis(ws_trunc, noise_mode=const)'
    G.train()
    img = G.synthesis(G.mapping(z, c), noise_mode='const')
    (img * probe).sum().backward()
    out['img_train_const'] = img
    how['img_train_const'] = ('train mode: synthesis(mapping(z, c), noise_mode=const); '
                              'grads/ = d/dparams sum(img_train_const * inputs/grad_probe)')
    out['w_avg_after_train_mapping'] = G.mapping.w_avg
    how['w_avg_after_train_mapping'] = ('train mode: mapping.w_avg after one mapping(z, c) call '
                                        f'(w_avg_beta={G.mapping.w_avg_beta}) starting from params')
    notes = ('eval: mapping/synthesis outputs; train mode: w_avg after one mapping call '
             f'(beta {G.mapping.w_avg_beta}), img_train_const and grads = d/dparams sum(img_train_const * '
             'inputs/grad_probe), params are the values BEFORE the w_avg update')
    return params, dict(z=z, c=c, grad_probe=probe), out, how, param_grads(torch, G), notes


def case_path_length(torch, networks, cfg, gen):
    G, params, z, c = new_generator(torch, networks, cfg, gen)
    R, C = cfg['img_resolution'], cfg['img_channels']
    noise = torch.randn([BATCH, C, R, R], generator=gen) / (R * R) ** 0.5
    pl_mean_in = torch.tensor(0.4 + torch.rand([], generator=gen).item())
    G.train()
    out = reference_spread.path_length_step(torch, G, z, c, noise, pl_mean_in)
    how = dict(pl_lengths='sqrt(mean over ws of sum over w_dim of g^2), g = d sum(img * pl_noise) / d ws',
               pl_mean_out='pl_mean_in.lerp(mean(pl_lengths), 0.01)',
               pl_penalty='(pl_lengths - pl_mean_out)^2')
    notes = ('ws = mapping(z,c) without w_avg update; img = synthesis(ws, noise const); pl_decay 0.01, '
             'pl_weight 2; grads = d/dparams mean(pl_penalty*pl_weight) with pl_mean treated as a constant')
    inputs = dict(z=z, c=c, pl_noise=noise, pl_mean_in=pl_mean_in)
    return params, inputs, out, how, param_grads(torch, G), notes


def case_discriminator(torch, networks, cfg, gen):
    D, params, img, c = new_discriminator(torch, networks, cfg, gen)
    probe = torch.randn([BATCH, 1], generator=gen)
    logits = D(img, c)
    (logits * probe).sum().backward()
    out = dict(logits=logits, grad_img=img.grad)
    how = dict(logits='train mode: D(img, c)', grad_img='d sum(logits * grad_probe) / d img')
    notes = 'logits = D(img, c); grads = d/dparams sum(logits * grad_probe); grad_img likewise w.r.t. img'
    return params, dict(img=img.detach(), c=c, grad_probe=probe), out, how, param_grads(torch, D), notes


def case_r1(torch, networks, cfg, gen):
    D, params, img, c = new_discriminator(torch, networks, cfg, gen)
    out = reference_spread.r1_step(torch, D, img, c, cfg['r1_gamma'])
    how = dict(logits='train mode: D(img, c)', r1_penalty='sum over C,H,W of (d sum(logits) / d img)^2, per sample')
    notes = ('r1_penalty = sum over CHW of (d sum(D(img,c)) / d img)^2; '
             'grads = d/dparams mean(r1_penalty * gamma/2)')
    return params, dict(img=img.detach(), c=c), out, how, param_grads(torch, D), notes


def write_ops_case(torch, np, h5py, path, rev, taps, calls, gen):
    """One ops fixture: random inputs, each call evaluated by the reference's functions."""
    from torch_utils.ops import bias_act as ba
    from torch_utils.ops import conv2d_resample as cr
    from torch_utils.ops import upfirdn2d as ud
    from training import networks
    inputs = dict(
        x=torch.randn([4, 6, 9, 7], generator=gen), w3=torch.randn([5, 6, 3, 3], generator=gen),
        w1=torch.randn([5, 6, 1, 1], generator=gen), wg=torch.randn([9, 2, 3, 3], generator=gen),
        b=torch.randn([6], generator=gen), xt=torch.randn([3, 4, 5], generator=gen),
        bt=torch.randn([5], generator=gen), z=torch.randn([4, 16], generator=gen))
    f = ud.setup_filter(taps)

    def mbstd(x, group_size, num_channels):
        return networks.MinibatchStdLayer(group_size=group_size, num_channels=num_channels)(x)

    env = dict(inputs, f=f, upfirdn2d=ud.upfirdn2d, upsample2d=ud.upsample2d, downsample2d=ud.downsample2d,
               filter2d=ud.filter2d, conv2d_resample=cr.conv2d_resample, bias_act=ba.bias_act,
               minibatch_std=mbstd, normalize_2nd_moment=networks.normalize_2nd_moment)
    tmp = path + '.tmp'
    with h5py.File(tmp, 'w') as out:
        out.attrs['kind'] = 'ops'
        out.attrs['config'] = '{}'
        out.attrs['notes'] = (f'see each output name: the ops of the reference with the {taps} filter '
                              '(setup_filter, normalised), inputs drawn from a normal distribution')
        out.attrs['reference'] = f'stylegan2-ada-pytorch {rev}, CPU float32, torch {torch.__version__}'
        out['params/resample_filter'] = f.numpy()
        for k, v in inputs.items():
            out['inputs/' + k] = v.numpy()
        with torch.no_grad():
            for name, call in calls:
                y = eval(call, {}, env)  # the call text is ours (OPS_CASES), not read from a file
                out['outputs/' + name] = y.numpy()
                out['outputs/' + name].attrs['how'] = call
    os.replace(tmp, path)
    print(f'{path}: ops, {len(calls)} outputs')


def write_pickle(torch, networks, spec, out_dir, seed):
    import copy
    import pickle
    from training import augment
    try:
        res, cbase, c_dim, channels = (int(v) for v in spec.split(','))
    except ValueError:
        sys.exit(f'--pickle {spec}: expected RES,CBASE,C_DIM,CHANNELS, e.g. 256,16384,0,3')
    path = os.path.join(out_dir, f'reference-res{res}-cbase{cbase}-c{c_dim}-ch{channels}.pkl')
    if os.path.exists(path):
        sys.exit(f'{path}: exists; choose an empty --out folder')
    torch.manual_seed(seed)
    common = dict(c_dim=c_dim, img_resolution=res, img_channels=channels)
    G = networks.Generator(z_dim=512, w_dim=512, mapping_kwargs=dict(num_layers=2 if res <= 256 else 8),
                           synthesis_kwargs=dict(channel_base=cbase, channel_max=512, num_fp16_res=4, conv_clamp=256),
                           **common)
    D = networks.Discriminator(channel_base=cbase, channel_max=512, num_fp16_res=4, conv_clamp=256,
                               epilogue_kwargs=dict(mbstd_group_size=8), **common)
    gen = torch.Generator().manual_seed(seed)
    for net in (G, D):
        randomise(torch, net, gen)
    G_ema = copy.deepcopy(G)
    pipe = augment.AugmentPipe(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1, brightness=1,
                               contrast=1, lumaflip=1, hue=1, saturation=1)
    pipe.p.copy_(torch.tensor(0.125))
    snapshot = dict(training_set_kwargs=dict(class_name='training.dataset.ImageFolderDataset', path='dataset.zip',
                                             resolution=res, use_labels=c_dim > 0, max_size=None, xflip=True))
    for name, module in [('G', G), ('D', D), ('G_ema', G_ema), ('augment_pipe', pipe)]:
        snapshot[name] = copy.deepcopy(module).eval().requires_grad_(False).cpu()
    with open(path + '.tmp', 'wb') as f:
        pickle.dump(snapshot, f)
    os.replace(path + '.tmp', path)
    print(f'{path}: {sum(p.numel() for p in G.parameters())} G parameters, {os.path.getsize(path)} bytes')


def compare_import(torch, np, h5py, pkl, h5):
    import legacy
    with open(pkl, 'rb') as f:
        data = legacy.load_network_pkl(f)
    compared, differ = 0, []
    with h5py.File(h5, 'r') as out:
        for net in ('G', 'D', 'G_ema'):
            for key, value in data[net].state_dict().items():
                compared += 1
                name = f'{net}/{key}'
                if name not in out or out[name].shape != tuple(value.shape) or not np.array_equal(out[name][()], value.numpy()):
                    differ.append(name)
        p_ok = float(np.asarray(out['augment_pipe/p'][()])) == float(data['augment_pipe'].p)
    print(f'{pkl} vs {h5}: {compared} tensors compared, {len(differ)} differ{": " + ", ".join(differ[:5]) if differ else ""}; '
          f'augment p {"equal" if p_ok else "DIFFERS"}')
    return 0 if not differ and p_ok else 1


def recompute(files, out_dir, networks):
    import shutil
    import h5py
    import torch
    runners = dict(r1=reference_spread.run_r1, path_length=reference_spread.run_path_length)
    for src in files:
        dst = os.path.join(out_dir, os.path.basename(src))
        if os.path.exists(dst):
            sys.exit(f'{dst}: exists; choose an empty --out folder')
        with h5py.File(src, 'r') as f:
            kind = f.attrs['kind']
            kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        if kind not in runners:
            sys.exit(f'{src}: kind {kind!r} cannot be recomputed (r1 and path_length only)')
        shutil.copyfile(src, dst + '.tmp')
        with h5py.File(dst + '.tmp', 'r+') as f:
            net, outs = runners[kind](networks, f, json.loads(f.attrs['config']))
            for k, v in outs.items():
                if k in f['outputs']:
                    f['outputs'][k][...] = v.detach().numpy()
            for k, p in net.named_parameters():
                if k in f['grads']:
                    f['grads'][k][...] = (p.grad if p.grad is not None else torch.zeros_like(p)).numpy()
            f.attrs['reference'] = f'recomputed here from {os.path.basename(src)}, torch {torch.__version__}, 1 thread'
        os.replace(dst + '.tmp', dst)
        print(f'{dst}: {kind}, outputs and grads recomputed by the reference on this machine')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--reference', required=True, help='checkout of NVlabs/stylegan2-ada-pytorch')
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--recompute', nargs='+', metavar='FILE', help='existing r1/path_length fixtures to recompute here')
    ap.add_argument('--pickle', metavar='RES,CBASE,C_DIM,CHANNELS', help='write one full-size reference network pickle')
    ap.add_argument('--compare', nargs=2, metavar=('PKL', 'H5'), help='compare a pickle with its imported checkpoint')
    ap.add_argument('--out', help='folder to write (created; existing files are not replaced)')
    args = ap.parse_args()
    if not args.compare and not args.out:
        ap.error('--out is required')
    if not os.path.isfile(os.path.join(args.reference, 'training', 'networks.py')):
        sys.exit(f'{args.reference}: not a stylegan2-ada-pytorch checkout (no training/networks.py)')
    import h5py
    import numpy as np
    import torch
    sys.path.insert(0, args.reference)
    from training import networks
    torch.set_num_threads(1)
    rev = 'unknown revision'
    head = os.path.join(args.reference, '.git', 'HEAD')
    if os.path.isfile(head):
        rev = open(head).read().strip()[:12]
    if args.compare:
        sys.exit(compare_import(torch, np, h5py, *args.compare))
    os.makedirs(args.out, exist_ok=True)
    if args.recompute:
        recompute(args.recompute, args.out, networks)
        return
    if args.pickle:
        write_pickle(torch, networks, args.pickle, args.out, args.seed)
        return
    runners = dict(generator=case_generator, path_length=case_path_length, discriminator=case_discriminator,
                   r1=case_r1)
    for i, (stem, kind, cfg) in enumerate(CASES):
        path = os.path.join(args.out, stem + '.h5')
        if os.path.exists(path):
            sys.exit(f'{path}: exists; choose an empty --out folder')
        torch.manual_seed(args.seed * 1000 + i)  # the reference's constructors draw from the global generator
        gen = torch.Generator().manual_seed(args.seed * 1000 + i)
        params, inputs, out, how, grads, notes = runners[kind](torch, networks, cfg, gen)
        tmp = path + '.tmp'
        with h5py.File(tmp, 'w') as f:
            f.attrs['kind'] = kind
            f.attrs['config'] = json.dumps(cfg)
            f.attrs['notes'] = notes
            f.attrs['reference'] = f'stylegan2-ada-pytorch {rev}, CPU float32, torch {torch.__version__}'
            for k, v in params.items():
                f['params/' + k] = v
            for k, v in inputs.items():
                f['inputs/' + k] = v.detach().numpy().astype(np.float32)
            for k, v in out.items():
                f['outputs/' + k] = v.detach().numpy().astype(np.float32)
                f['outputs/' + k].attrs['how'] = how[k]
            for k, v in grads.items():
                f['grads/' + k] = v
        os.replace(tmp, path)
        print(f'{path}: {kind}, {len(params)} params, {len(out)} outputs, {len(grads)} grads')
    for i, (stem, taps, calls) in enumerate(OPS_CASES):
        path = os.path.join(args.out, stem + '.h5')
        if os.path.exists(path):
            sys.exit(f'{path}: exists; choose an empty --out folder')
        gen = torch.Generator().manual_seed(args.seed * 1000 + 500 + i)
        write_ops_case(torch, np, h5py, path, rev, taps, calls, gen)


if __name__ == '__main__':
    main()
