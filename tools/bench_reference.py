#!/usr/bin/python3
"""Times styleforge's training step against the reference's, alternately, on the same work.

`styleforge bench` times our training iteration on reals held in memory. This tool runs it and the
reference's own training iteration (a checkout of NVlabs/stylegan2-ada-pytorch) in turn, each in a
fresh process, on the same device with the same number of threads, and prints every pair and the
median ratio ours/reference (below 1: ours is faster). Each pair alternates which side goes first,
so a drift in the machine's load does not always favour one side.

What the reference side runs (a function of this file, in a child process of /usr/bin/python3 with
PYTHONPATH at the checkout): the reference's Generator and Discriminator (training/networks.py)
with the kwargs train.py gives them for the same preset and overrides as `styleforge bench`, its
StyleGAN2Loss (training/loss.py) and the body of the loop of training/training_loop.py: the batch
fetched from uint8 reals held in memory, Gmain, Greg every 4, Dmain, Dreg every 16, Adam with the
lazy-regularisation ratios, nan_to_num on gradients, the G_ema update with its ramp-up, the ADA
heuristic (and AugmentPipe 'bgc') for --aug ada. One untimed warm-up iteration, then --iters timed
ones, each ended by a device synchronisation on CUDA; sec/kimg = total / (iters * batch) * 1000.
Both sides compute in float32 (ours has no mixed precision yet): the reference is built with
num_fp16_res=0 and conv_clamp=256, as ours; --reference-fp16 gives it its mixed precision on CUDA
(num_fp16_res=4), which is then not the same work.

Our side: `styleforge bench ... --overlap on --pairs 1 --device D`, its final `sec/kimg` line.

  /usr/bin/python3 tools/bench_reference.py --reference ~/stylegan2-ada-pytorch \\
      --styleforge build/styleforge --resolution 32 --cbase 4096 --cmax 128 --batch 8 --aug noaug \\
      --threads 1 --iters 16 --pairs 3

Needs Debian's python3-torch (apt-get install python3-torch; python3-scipy for --aug ada/fixed) for
the reference on the CPU. --python runs the reference under another Python, e.g. the LibTorch venv
(~/.cache/styleforge/venv-torch-2.11.0/bin/python) to compare on the same torch as ours, or on a GPU
machine a Python whose torch sees the GPU. The reference's CUDA plugins (bias_act, upfirdn2d) are
compiled by that torch when it can, else the reference falls back to its own slower implementation
and says so (-v shows it); on the CPU they are never used. conv2d_gradfix and grid_sample_gradfix
are enabled as training_loop.py does. On PyTorch newer than 1.9 the reference turns both off;
grid_sample_gradfix is then re-enabled here with that torch's grid_sampler_2d_backward signature (as
stylegan3 does), since R1 through the augmentation needs its double backward, while conv2d_gradfix
stays off (torch's conv2d, as in the reference there; on CUDA this computes weight gradients the
custom op would skip in the R1 and path-length gradients).
"""
import argparse
import glob
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# train.py's cfg_specs (auto is filled from the resolution, as there and in styleforge).
CFG_SPECS = {
    'auto':      dict(ref_gpus=-1, kimg=25000,  mb=-1, mbstd=-1, fmaps=-1,  lrate=-1,     gamma=-1,   ema=-1,  ramp=0.05, map=2),
    'stylegan2': dict(ref_gpus=8,  kimg=25000,  mb=32, mbstd=4,  fmaps=1,   lrate=0.002,  gamma=10,   ema=10,  ramp=None, map=8),
    'paper256':  dict(ref_gpus=8,  kimg=25000,  mb=64, mbstd=8,  fmaps=0.5, lrate=0.0025, gamma=1,    ema=20,  ramp=None, map=8),
    'paper512':  dict(ref_gpus=8,  kimg=25000,  mb=64, mbstd=8,  fmaps=1,   lrate=0.0025, gamma=0.5,  ema=20,  ramp=None, map=8),
    'paper1024': dict(ref_gpus=8,  kimg=25000,  mb=32, mbstd=4,  fmaps=1,   lrate=0.002,  gamma=2,    ema=10,  ramp=None, map=8),
    'cifar':     dict(ref_gpus=2,  kimg=100000, mb=64, mbstd=32, fmaps=1,   lrate=0.0025, gamma=0.01, ema=500, ramp=0.05, map=2),
}

# training/augment.py's augpipe_specs['bgc'] (train.py's default --augpipe).
AUGPIPE_BGC = dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1,
                   brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Alternately time styleforge's training step and the reference's (stylegan2-ada-pytorch) "
                    'on the same work, device and threads; print each pair and the median ratio ours/reference.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--reference', required=True, help='checkout of NVlabs/stylegan2-ada-pytorch')
    p.add_argument('--styleforge', default=None,
                   help='styleforge binary (default: the newest build*/styleforge of this repository)')
    p.add_argument('--python', default='/usr/bin/python3', help='Python (with torch) that runs the reference')
    p.add_argument('--resolution', type=int, default=32)
    p.add_argument('--channels', type=int, default=3)
    p.add_argument('--cbase', type=int, default=4096, help='channel base (ignored with --cfg)')
    p.add_argument('--cmax', type=int, default=128, help='channel maximum (ignored with --cfg)')
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--iters', type=int, default=16, help='timed iterations per run (16 covers the lazy schedule)')
    p.add_argument('--threads', type=int, default=1, help='intra-op threads of both sides')
    p.add_argument('--aug', choices=['noaug', 'ada', 'fixed'], default='noaug', help='fixed: p = 0.5')
    p.add_argument('--pairs', type=int, default=3, help='runs of each side (alternating which goes first)')
    p.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    p.add_argument('--cfg', default=None, choices=sorted(CFG_SPECS),
                   help="a preset on both sides instead of --cbase/--cmax (mapping depth, mbstd group, gamma, ...)")
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--reference-fp16', action='store_true',
                   help='build the reference with num_fp16_res=4 (its default mixed precision; CUDA only; not the same work)')
    p.add_argument('-v', '--verbose', action='store_true', help="print both sides' whole output")
    p.add_argument('--run-reference', action='store_true', help=argparse.SUPPRESS)  # the child process
    a = p.parse_args(argv)
    for name in ('resolution', 'batch', 'iters', 'threads', 'pairs'):
        if getattr(a, name) < 1:
            p.error(f'--{name} must be positive')
    if a.resolution < 4 or a.resolution & (a.resolution - 1):
        p.error('--resolution must be a power of two, at least 4')
    if a.reference_fp16 and a.device != 'cuda':
        p.error('--reference-fp16 needs --device cuda (no float16 convolutions on the CPU)')
    return a


def resolve(a):
    """The training options both sides use: styleforge's run_bench rules (trainer/generate.cpp), which
    follow train.py: the preset (auto unless --cfg), then --batch; without --cfg the small CPU network
    --cbase/--cmax, mapping depth 2, minibatch-std group 4 and gamma 0.0002 * res^2 / batch."""
    cfg = a.cfg or 'auto'
    s = dict(CFG_SPECS[cfg])
    res = a.resolution
    if cfg == 'auto':
        gpus = 1
        s['ref_gpus'] = gpus
        s['mb'] = max(min(gpus * min(4096 // res, 32), 64), gpus)
        s['mbstd'] = min(s['mb'] // gpus, 4)
        s['fmaps'] = 1 if res >= 512 else 0.5
        s['lrate'] = 0.002 if res >= 1024 else 0.0025
        s['gamma'] = 0.0002 * (res ** 2) / s['mb']
        s['ema'] = s['mb'] * 10 / 32
    o = dict(cbase=int(s['fmaps'] * 32768), cmax=512, map=s['map'], mbstd=s['mbstd'], lrate=s['lrate'],
             gamma=s['gamma'], ema_kimg=s['ema'], ema_rampup=s['ramp'], batch=a.batch, batch_gpu=a.batch,
             pl_weight=2, style_mixing_prob=0.9, d_architecture='resnet')
    if cfg == 'cifar':
        o.update(pl_weight=0, style_mixing_prob=0, d_architecture='orig')
    if a.cfg is None:
        o.update(cbase=a.cbase, cmax=a.cmax, map=2, mbstd=4, gamma=0.0002 * res * res / a.batch)
    return o


# ---------------------------------------------------------------------------------------------------
# Reference side (runs in the child process).

def patch_grid_sample_gradfix(torch, gradfix):
    """The reference's grid_sample_gradfix custom op on PyTorch > 1.9, as its successor (stylegan3)
    does it. The R1 penalty through the augmentation pipe needs the double backward of grid_sample,
    which torch's own op lacks ("derivative for aten::grid_sampler_2d_backward is not implemented");
    the reference enables its custom op only for PyTorch 1.7-1.9, whose grid_sampler_2d_backward took
    no output_mask."""
    def backward_forward(ctx, grad_output, input, grid):
        output_mask = (ctx.needs_input_grad[1], ctx.needs_input_grad[2])
        grad_input, grad_grid = torch.ops.aten.grid_sampler_2d_backward(grad_output, input, grid, 0, 0, False,
                                                                       output_mask)
        ctx.save_for_backward(grid)
        return grad_input, grad_grid
    gradfix._GridSample2dBackward.forward = staticmethod(backward_forward)
    gradfix._should_use_custom_op = lambda: gradfix.enabled


def run_reference(a):
    import copy
    import warnings

    import numpy as np
    import torch

    sys.path.insert(0, os.path.abspath(a.reference))
    try:
        import requests  # noqa: F401  (dnnlib.util imports it for downloads; nothing is downloaded here)
    except ImportError:
        import types
        sys.modules['requests'] = types.ModuleType('requests')
    import dnnlib
    from torch_utils import misc, training_stats
    from torch_utils.ops import conv2d_gradfix, grid_sample_gradfix
    from training import networks
    from training.loss import StyleGAN2Loss

    o = resolve(a)
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    cuda = device.type == 'cuda'
    if cuda and not torch.cuda.is_available():
        sys.exit('bench_reference: --device cuda but this torch sees no GPU (give --python a CUDA PyTorch)')
    # As training_loop.py: seeds, cuDNN benchmark on, TF32 off, the gradfix ops enabled. On the CPU
    # and on PyTorch > 1.9 the gradfix ops fall back to torch's own; say so once, not per call.
    np.random.seed(a.seed)
    torch.manual_seed(a.seed)
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    conv2d_gradfix.enabled = True
    grid_sample_gradfix.enabled = True
    warnings.filterwarnings('ignore', message='conv2d_gradfix not supported')
    custom = any(torch.__version__.startswith(x) for x in ['1.7.', '1.8.', '1.9'])
    if not custom:
        patch_grid_sample_gradfix(torch, grid_sample_gradfix)

    fp16_res = 4 if a.reference_fp16 else 0
    common = dict(c_dim=0, img_resolution=a.resolution, img_channels=a.channels)
    G = networks.Generator(z_dim=512, w_dim=512, mapping_kwargs=dnnlib.EasyDict(num_layers=o['map']),
                           synthesis_kwargs=dnnlib.EasyDict(channel_base=o['cbase'], channel_max=o['cmax'],
                                                            num_fp16_res=fp16_res, conv_clamp=256), **common)
    D = networks.Discriminator(architecture=o['d_architecture'], channel_base=o['cbase'], channel_max=o['cmax'],
                               num_fp16_res=fp16_res, conv_clamp=256, block_kwargs=dnnlib.EasyDict(),
                               mapping_kwargs=dnnlib.EasyDict(),
                               epilogue_kwargs=dnnlib.EasyDict(mbstd_group_size=o['mbstd']), **common)
    G = G.train().requires_grad_(False).to(device)
    D = D.train().requires_grad_(False).to(device)
    G_ema = copy.deepcopy(G).eval()

    augment_pipe, ada_stats, ada_target = None, None, None
    if a.aug != 'noaug':
        from training.augment import AugmentPipe  # needs scipy (python3-scipy)
        augment_pipe = AugmentPipe(**AUGPIPE_BGC).train().requires_grad_(False).to(device)
        augment_pipe.p.copy_(torch.as_tensor(0.5 if a.aug == 'fixed' else 0.0))
        if a.aug == 'ada':
            ada_target, ada_interval, ada_kimg = 0.6, 4, 500
            ada_stats = training_stats.Collector(regex='Loss/signs/real')

    loss = StyleGAN2Loss(device=device, G_mapping=G.mapping, G_synthesis=G.synthesis, D=D, augment_pipe=augment_pipe,
                         r1_gamma=o['gamma'], pl_weight=o['pl_weight'], style_mixing_prob=o['style_mixing_prob'])
    phases = []
    for name, module, reg_interval in [('G', G, 4), ('D', D, 16)]:
        mb_ratio = reg_interval / (reg_interval + 1)
        opt = torch.optim.Adam(module.parameters(), lr=o['lrate'] * mb_ratio,
                               betas=[beta ** mb_ratio for beta in [0, 0.99]], eps=1e-8)
        phases += [dnnlib.EasyDict(name=name + 'main', module=module, opt=opt, interval=1)]
        phases += [dnnlib.EasyDict(name=name + 'reg', module=module, opt=opt, interval=reg_interval)]

    batch_size = batch_gpu = o['batch']
    num_gpus = 1
    gen = torch.Generator().manual_seed(a.seed)
    reals_u8 = torch.randint(0, 256, [batch_size, a.channels, a.resolution, a.resolution], dtype=torch.uint8,
                             generator=gen)  # the data loader's batch, held in memory
    reals_c = torch.zeros([batch_size, 0], dtype=torch.float32)
    state = dict(cur_nimg=0, batch_idx=0)

    def iteration():
        # training_loop.py, "Fetch training data" .. "Execute ADA heuristic" (labels: c_dim = 0).
        phase_real_img = (reals_u8.to(device).to(torch.float32) / 127.5 - 1).split(batch_gpu)
        phase_real_c = reals_c.to(device).split(batch_gpu)
        all_gen_z = torch.randn([len(phases) * batch_size, G.z_dim], device=device)
        all_gen_z = [phase_gen_z.split(batch_gpu) for phase_gen_z in all_gen_z.split(batch_size)]
        all_gen_c = [np.zeros([0], dtype=np.float32) for _ in range(len(phases) * batch_size)]
        all_gen_c = torch.from_numpy(np.stack(all_gen_c))
        all_gen_c = (all_gen_c.pin_memory() if cuda else all_gen_c).to(device)
        all_gen_c = [phase_gen_c.split(batch_gpu) for phase_gen_c in all_gen_c.split(batch_size)]
        for phase, phase_gen_z, phase_gen_c in zip(phases, all_gen_z, all_gen_c):
            if state['batch_idx'] % phase.interval != 0:
                continue
            phase.opt.zero_grad(set_to_none=True)
            phase.module.requires_grad_(True)
            for round_idx, (real_img, real_c, gen_z, gen_c) in enumerate(
                    zip(phase_real_img, phase_real_c, phase_gen_z, phase_gen_c)):
                sync = (round_idx == batch_size // (batch_gpu * num_gpus) - 1)
                loss.accumulate_gradients(phase=phase.name, real_img=real_img, real_c=real_c, gen_z=gen_z,
                                          gen_c=gen_c, sync=sync, gain=phase.interval)
            phase.module.requires_grad_(False)
            for param in phase.module.parameters():
                if param.grad is not None:
                    misc.nan_to_num(param.grad, nan=0, posinf=1e5, neginf=-1e5, out=param.grad)
            phase.opt.step()
        ema_nimg = o['ema_kimg'] * 1000
        if o['ema_rampup'] is not None:
            ema_nimg = min(ema_nimg, state['cur_nimg'] * o['ema_rampup'])
        ema_beta = 0.5 ** (batch_size / max(ema_nimg, 1e-8))
        for p_ema, p in zip(G_ema.parameters(), G.parameters()):
            p_ema.copy_(p.lerp(p_ema, ema_beta))
        for b_ema, b in zip(G_ema.buffers(), G.buffers()):
            b_ema.copy_(b)
        state['cur_nimg'] += batch_size
        state['batch_idx'] += 1
        if (ada_stats is not None) and (state['batch_idx'] % ada_interval == 0):
            ada_stats.update()
            adjust = np.sign(ada_stats['Loss/signs/real'] - ada_target) * (batch_size * ada_interval) / (ada_kimg * 1000)
            augment_pipe.p.copy_((augment_pipe.p + adjust).max(misc.constant(0, device=device)))
        if cuda:
            torch.cuda.synchronize(device)

    print(f'reference: torch {torch.__version__}, resolution {a.resolution}, channels {a.channels}, '
          f"cbase {o['cbase']}, cmax {o['cmax']}, map {o['map']}, mbstd {o['mbstd']}, batch {batch_size}, "
          f'aug {a.aug}, threads {torch.get_num_threads()}, iters {a.iters}, device {device}, '
          f"num_fp16_res {fp16_res}, conv2d_gradfix {'custom' if custom and cuda else 'torch conv2d'}, "
          f"grid_sample_gradfix {'custom' if custom else 'custom (patched for this torch)'}")
    print('phases: ' + ' '.join(f'{ph.name}(every {ph.interval})' for ph in phases) +
          f"; style mixing {o['style_mixing_prob']:.1f}, R1 gamma {o['gamma']:.4g}, pl weight {o['pl_weight']:.0f}",
          flush=True)
    iteration()  # warm-up, not timed
    per = []
    for _ in range(a.iters):
        t0 = time.perf_counter()
        iteration()
        per.append(time.perf_counter() - t0)
    total = sum(per)
    srt = sorted(per)
    print(f'sec/iter mean {total / len(per):.4f}  median {srt[len(srt) // 2]:.4f}  min {srt[0]:.4f}  '
          f'max {srt[-1]:.4f}')
    print(f'sec/kimg {total / (a.iters * batch_size) * 1000:.2f}', flush=True)


# ---------------------------------------------------------------------------------------------------
# Driver.

def find_styleforge():
    found = [p for p in glob.glob(os.path.join(REPO, 'build*', 'styleforge')) if os.access(p, os.X_OK)]
    if not found:
        sys.exit('bench_reference: no build*/styleforge in this repository; give --styleforge')
    return max(found, key=os.path.getmtime)


def last_sec_per_kimg(text):
    vals = re.findall(r'^sec/kimg\s+([0-9.eE+-]+)\s*$', text, flags=re.M)
    return float(vals[-1]) if vals else None


def run_side(label, cmd, env):
    t0 = time.time()
    r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    val = last_sec_per_kimg(r.stdout)
    if r.returncode != 0 or val is None:
        tail = '\n'.join(r.stdout.splitlines()[-25:])
        sys.exit(f'bench_reference: {label} failed (exit {r.returncode}): {" ".join(cmd)}\n{tail}')
    return val, r.stdout, time.time() - t0


def main(argv=None):
    a = parse_args(argv)
    if a.run_reference:
        return run_reference(a)
    ref = os.path.abspath(os.path.expanduser(a.reference))
    if not os.path.isfile(os.path.join(ref, 'training', 'networks.py')):
        sys.exit(f'bench_reference: {ref} is not a checkout of stylegan2-ada-pytorch (no training/networks.py)')
    sf = os.path.abspath(a.styleforge) if a.styleforge else find_styleforge()
    common = ['--resolution', str(a.resolution), '--channels', str(a.channels), '--batch', str(a.batch),
              '--iters', str(a.iters), '--threads', str(a.threads), '--aug', a.aug, '--seed', str(a.seed),
              '--device', a.device]
    if a.cfg:
        common += ['--cfg', a.cfg]
    else:
        common += ['--cbase', str(a.cbase), '--cmax', str(a.cmax)]
    ours_cmd = [sf, 'bench'] + common + ['--overlap', 'on', '--pairs', '1']
    ref_cmd = [a.python, os.path.abspath(__file__), '--run-reference', '--reference', ref] + common
    if a.reference_fp16:
        ref_cmd.append('--reference-fp16')
    env = dict(os.environ)
    # Both sides get the same OpenMP/BLAS thread counts (each also sets its intra-op threads itself).
    for k in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS'):
        env[k] = str(a.threads)
    ref_env = dict(env)
    ref_env['PYTHONPATH'] = ref + (os.pathsep + env['PYTHONPATH'] if env.get('PYTHONPATH') else '')

    try:
        ver = subprocess.run([sf, 'version'], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
        libtorch = re.search(r'^libtorch\s+(.*)$', ver, flags=re.M).group(1).strip()
    except (OSError, AttributeError):
        libtorch = 'unknown'
    print(f'bench_reference: ours {os.path.relpath(sf)} (LibTorch {libtorch}), reference {ref} ({a.python})')
    print('ours:      ' + ' '.join(ours_cmd[1:]))
    print('reference: ' + ' '.join(['tools/bench_reference.py'] + ref_cmd[2:]))
    sys.stdout.flush()
    ratios = []
    for i in range(a.pairs):
        order = ['ours', 'reference'] if i % 2 == 0 else ['reference', 'ours']
        got = {}
        for side in order:
            cmd, e = (ours_cmd, env) if side == 'ours' else (ref_cmd, ref_env)
            got[side] = run_side(side, cmd, e)
            out = got[side][1]
            if a.verbose:
                print(''.join(f'  {side}| {line}\n' for line in out.splitlines()), end='')
            elif i == 0:  # what each side says it ran, once
                for line in out.splitlines():
                    if line.startswith(('bench:', 'reference:', 'phases:')):
                        print(f'  {side}| {line}')
        ours, theirs = got['ours'][0], got['reference'][0]
        ratios.append(ours / theirs)
        print(f'pair {i + 1} ({order[0]} first): ours {ours:.2f} sec/kimg, reference {theirs:.2f} sec/kimg, '
              f'ours/reference {ours / theirs:.3f}', flush=True)
    med = statistics.median(ratios)
    print(f'median ours/reference {med:.3f} over {len(ratios)} pairs '
          f"({'ours faster' if med < 1 else 'reference faster' if med > 1 else 'equal'}; "
          f'range {min(ratios):.3f}..{max(ratios):.3f})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
