#!/usr/bin/env python3
"""Loads network pickles with a stylegan2-ada-pytorch checkout, for tests/test_export.cpp.

    python tests/reference_pickle.py REFERENCE_DIR describe NET.pkl [NET.pkl ...]
        One JSON object per pickle on stdout, as loaded by the reference's legacy.load_network_pkl:
        for G, D, G_ema and augment_pipe the class, training flag, whether any tensor requires a
        gradient, init_kwargs and the SHA-256 of every state_dict tensor's float32 bytes; plus
        training_set_kwargs.
    python tests/reference_pickle.py REFERENCE_DIR generate ARGS...
        The reference's generate.py with ARGS (--network, --seeds, --outdir, ...). Its device line
        asks for CUDA; without a GPU it runs on the CPU (that line alone is swapped).

Run it with a Python that has torch, numpy, click and Pillow (scripts/test-python-deps.sh).
"""
import hashlib
import json
import os
import sys


def module_info(m):
    if m is None:
        return None
    # Persistent classes are subclasses made by torch_utils.persistence: name the decorated class.
    cls = next(c for c in type(m).__mro__ if c.__module__ != 'torch_utils.persistence')
    return {
        'class': f'{cls.__module__}.{cls.__name__}',
        'training': m.training,
        'requires_grad': any(p.requires_grad for p in m.parameters()),
        'init_kwargs': json.loads(json.dumps(m.init_kwargs, default=str)),
        'tensors': {k: hashlib.sha256(v.detach().cpu().float().contiguous().numpy().tobytes()).hexdigest()
                    for k, v in m.state_dict().items()},
    }


def describe(paths):
    import legacy  # noqa: E402  (the reference's loader)
    for path in paths:
        with open(path, 'rb') as f:
            data = legacy.load_network_pkl(f)
        out = {k: module_info(data[k]) for k in ('G', 'D', 'G_ema', 'augment_pipe')}
        if data['augment_pipe'] is not None:
            out['augment_pipe']['p'] = float(data['augment_pipe'].p)
        out['training_set_kwargs'] = data['training_set_kwargs']
        print(json.dumps(out))


def generate(args):
    script = os.path.join(ref, 'generate.py')
    with open(script, encoding='utf-8-sig') as f:
        source = f.read()
    import torch
    if not torch.cuda.is_available():
        line = "device = torch.device('cuda')"
        if source.count(line) != 1:
            sys.exit(f'{script}: expected one "{line}" to run it on the CPU')
        source = source.replace(line, "device = torch.device('cpu')")
    sys.argv = [script] + args
    exec(compile(source, script, 'exec'), {'__name__': '__main__', '__file__': script})


if __name__ == '__main__':
    if len(sys.argv) < 3 or sys.argv[2] not in ('describe', 'generate'):
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(2)
    ref = os.path.abspath(sys.argv[1])
    sys.path.insert(0, ref)
    if sys.argv[2] == 'describe':
        describe(sys.argv[3:])
    else:
        generate(sys.argv[3:])
