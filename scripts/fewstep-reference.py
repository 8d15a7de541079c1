#!/usr/bin/env python3
"""Reference trajectories of diffusers' LCMScheduler (v0.26) and TCDScheduler (v0.27).

No PyTorch here, so this is an independent NumPy transcription of the two classes'
`set_timesteps` and `step` (float32 arithmetic where diffusers uses torch), run with the model
of the shared scheduler fixtures, eps = 0.3*tanh(x) + 0.01*(t/1000)*flip_w(x). The noise the
steps draw comes from NumPy's generator and is stored with the trajectory, so a test feeds the
same draws and also checks how many a run takes.

Writes test/data/fewstep-reference.json (cases) and test/data/fewstep-reference.safetensors
(per case: NAME.timesteps, NAME.trajectory [steps+1, 1, 4, 8, 8], NAME.noise [draws, 1, 4, 8, 8],
absent when the run draws none).
Run: python3 scripts/fewstep-reference.py
"""
import json
import os
import struct

import numpy as np

F = np.float32
SHAPE = (1, 4, 8, 8)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "data")


def alphas_cumprod(cfg):
    n = cfg.get("num_train_timesteps", 1000)
    start = cfg.get("beta_start", 0.00085)
    end = cfg.get("beta_end", 0.012)
    schedule = cfg.get("beta_schedule", "scaled_linear")
    if schedule == "linear":
        betas = np.linspace(start, end, n).astype(F)
    elif schedule == "scaled_linear":
        betas = np.linspace(start**0.5, end**0.5, n).astype(F) ** 2
    else:
        raise ValueError(schedule)
    alphas = (F(1) - betas).astype(F)
    # torch.cumprod on a float32 CPU tensor accumulates in double.
    return np.cumprod(alphas.astype(np.float64)).astype(F)


def set_timesteps(cfg, steps, strength):
    """LCMScheduler.set_timesteps / TCDScheduler.set_timesteps without custom timesteps."""
    n_train = cfg.get("num_train_timesteps", 1000)
    original = cfg.get("original_inference_steps", 50)
    k = n_train // original
    origin = np.asarray(list(range(1, int(original * strength) + 1))) * k - 1
    assert len(origin) // steps >= 1 and steps <= original
    origin = origin[::-1].copy()
    idx = np.floor(np.linspace(0, len(origin), num=steps, endpoint=False)).astype(np.int64)
    return origin[idx]


def model(x, t):
    return (F(0.3) * np.tanh(x) + F(0.01) * F(t / 1000) * x[..., ::-1]).astype(F)


def predict(prediction, m, x, a):
    sa, sb = np.sqrt(a), np.sqrt(F(1) - a)
    if prediction == "epsilon":
        return (x - sb * m) / sa, m
    if prediction == "sample":
        return m, (x - sa * m) / sb
    return sa * x - sb * m, sa * m + sb * x


def lcm_step(cfg, ac, timesteps, i, m, x, draw):
    t = timesteps[i]
    a = ac[t]
    scaled = F(t) * F(cfg.get("timestep_scaling", 10.0))
    c_skip = F(0.25) / (scaled**2 + F(0.25))
    c_out = scaled / np.sqrt(scaled**2 + F(0.25))
    x0, _ = predict(cfg.get("prediction_type", "epsilon"), m, x, a)
    if cfg.get("clip_sample", False):
        r = F(cfg.get("clip_sample_range", 1.0))
        x0 = np.clip(x0, -r, r)
    denoised = c_out * x0 + c_skip * x
    if i == len(timesteps) - 1:
        return denoised
    a_prev = ac[timesteps[i + 1]]
    return np.sqrt(a_prev) * denoised + np.sqrt(F(1) - a_prev) * draw()


def tcd_step(cfg, gamma, ac, timesteps, i, m, x, draw):
    t = timesteps[i]
    prev = timesteps[i + 1] if i + 1 < len(timesteps) else 0
    s = int(np.floor(F(1 - gamma) * F(prev)))
    x0, eps = predict(cfg.get("prediction_type", "epsilon"), m, x, ac[t])
    a_s = ac[s]
    noised = np.sqrt(a_s) * x0 + np.sqrt(F(1) - a_s) * eps
    if gamma > 0 and i != len(timesteps) - 1:
        ratio = ac[prev] / a_s
        return np.sqrt(ratio) * noised + np.sqrt(F(1) - ratio) * draw()
    return noised


LCM_DREAMSHAPER = {
    "_class_name": "LCMScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "original_inference_steps": 50,
    "clip_sample": False,
    "set_alpha_to_one": True,
    "steps_offset": 1,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
    "timestep_scaling": 10.0,
}

CASES = [
    {"name": "lcm_4", "scheduler": "lcm", "config": LCM_DREAMSHAPER, "steps": 4},
    {"name": "lcm_1", "scheduler": "lcm", "config": LCM_DREAMSHAPER, "steps": 1},
    {"name": "lcm_8_v", "scheduler": "lcm", "config": {**LCM_DREAMSHAPER, "prediction_type": "v_prediction"}, "steps": 8},
    {
        "name": "lcm_6_sample_clip",
        "scheduler": "lcm",
        "config": {**LCM_DREAMSHAPER, "prediction_type": "sample", "clip_sample": True, "clip_sample_range": 0.5, "original_inference_steps": 100, "timestep_scaling": 5.0},
        "steps": 6,
    },
    {"name": "lcm_5_linear_betas", "scheduler": "lcm", "config": {"beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02}, "steps": 5},
    {"name": "lcm_4_class_defaults", "scheduler": "lcm", "config": {}, "steps": 4},
    {"name": "lcm_4_strength_0.6", "scheduler": "lcm", "config": LCM_DREAMSHAPER, "steps": 4, "strength": 0.6},
    {"name": "tcd_4", "scheduler": "tcd", "config": {**LCM_DREAMSHAPER, "_class_name": "TCDScheduler"}, "steps": 4, "eta": 0.3},
    {"name": "tcd_4_gamma0", "scheduler": "tcd", "config": {**LCM_DREAMSHAPER, "_class_name": "TCDScheduler"}, "steps": 4, "eta": 0.0},
    {"name": "tcd_8_v_gamma1", "scheduler": "tcd", "config": {**LCM_DREAMSHAPER, "prediction_type": "v_prediction"}, "steps": 8, "eta": 1.0},
    {"name": "tcd_6_sample", "scheduler": "tcd", "config": {**LCM_DREAMSHAPER, "prediction_type": "sample"}, "steps": 6, "eta": 0.5},
    {"name": "tcd_4_strength_0.5", "scheduler": "tcd", "config": LCM_DREAMSHAPER, "steps": 4, "eta": 0.3, "strength": 0.5},
]


def run(case, rng):
    cfg = case["config"]
    ac = alphas_cumprod(cfg)
    timesteps = set_timesteps(cfg, case["steps"], case.get("strength", 1.0))
    x = rng.standard_normal(SHAPE).astype(F)
    traj, draws = [x], []

    def draw():
        z = rng.standard_normal(SHAPE).astype(F)
        draws.append(z)
        return z

    for i, t in enumerate(timesteps):
        m = model(x, int(t))
        if case["scheduler"] == "lcm":
            x = lcm_step(cfg, ac, timesteps, i, m, x, draw)
        else:
            x = tcd_step(cfg, case["eta"], ac, timesteps, i, m, x, draw)
        x = x.astype(F)
        traj.append(x)
    return timesteps, np.stack(traj), draws


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, arr in tensors.items():
        data = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(head)) + head + b"".join(blobs))


def main():
    rng = np.random.default_rng(2024)
    tensors = {}
    for case in CASES:
        timesteps, traj, noise = run(case, rng)
        tensors[f"{case['name']}.timesteps"] = timesteps.astype(F)
        tensors[f"{case['name']}.trajectory"] = traj
        if noise:
            tensors[f"{case['name']}.noise"] = np.stack(noise)
        assert np.isfinite(traj).all(), case["name"]
    os.makedirs(OUT, exist_ok=True)
    write_safetensors(os.path.join(OUT, "fewstep-reference.safetensors"), tensors)
    with open(os.path.join(OUT, "fewstep-reference.json"), "w") as fh:
        json.dump(CASES, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    main()
