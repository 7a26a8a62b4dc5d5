"""`loupe import` end to end, process start included, against a naive eager fp32 per-image torch loop
(its own process too: PIL decode, resize/crop, the same timm weights, torch.no_grad), on the same
640 Clothing-10 photos; plus the CLI's start to its first embedding (`loupe search`).

Runs: the loop; `loupe import` into a fresh data dir with the compiled model not yet built ("cold":
the one-time conversion included) and with it cached ("warm": every later data dir of a machine
that copies DATA_DIR/compiled, and every later import into the same data dir); `--runtime torch`.

    python benchmarks/import_speed.py [--photos 640]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATASETS, write_result  # noqa: E402

NAIVE = textwrap.dedent("""
    import sys
    from pathlib import Path
    import torch
    from PIL import Image
    from loupe.backbones.torchvision_compat import import_with_torchvision_fix
    from loupe.backbones.specs import wheel_weights_file
    from loupe.backbones.effnet_lite import load_positional
    timm = import_with_torchvision_fix("timm")
    torch.set_num_threads(2)
    model = timm.create_model("tf_efficientnet_lite2", pretrained=False)
    load_positional(model, torch.load(wheel_weights_file("effnet-lite2"), map_location="cpu", weights_only=True))
    model.eval()
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    with torch.no_grad():
        for path in sorted(Path(sys.argv[1]).rglob("*.jpg")):
            x = transform(Image.open(path).convert("RGB"))[None]
            model.forward_head(model.forward_features(x), pre_logits=True)
""")


def run(cmd: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=int, default=640)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    folder = tmp / "photos"
    classes = sorted(p.name for p in (DATASETS / "clothing10" / "train").iterdir())
    per_class = args.photos // len(classes)
    for cls in classes:
        (folder / cls).mkdir(parents=True)
        for path in sorted((DATASETS / "clothing10" / "train" / cls).glob("*.jpg"))[:per_class]:
            shutil.copy(path, folder / cls / path.name)
    n = per_class * len(classes)
    loupe = [sys.executable, "-m", "loupe.cli"]

    naive = run([sys.executable, "-c", NAIVE, str(folder)])
    cold = run([*loupe, "--data-dir", str(tmp / "cold"), "import", str(folder), "--app", "a"])
    (tmp / "warm").mkdir()
    shutil.copytree(tmp / "cold" / "compiled", tmp / "warm" / "compiled")
    warm = run([*loupe, "--data-dir", str(tmp / "warm"), "import", str(folder), "--app", "a"])
    torch_path = run([*loupe, "--data-dir", str(tmp / "torch"), "--runtime", "torch", "import", str(folder),
                      "--app", "a"])
    query = str(next(folder.rglob("*.jpg")))
    search_times = [run([*loupe, "--data-dir", str(tmp / "warm"), "search", query, "--app", "a", "-k", "3"])
                    for _ in range(3)]
    torch_search = run([*loupe, "--data-dir", str(tmp / "torch"), "--runtime", "torch", "search", query,
                        "--app", "a", "-k", "3"])
    result = {
        "photos": n,
        "naive_eager_fp32_loop": {"seconds": round(naive, 2), "img_s": round(n / naive, 1)},
        "loupe_import_openvino_cold": {"seconds": round(cold, 2), "img_s": round(n / cold, 1),
                                       "vs_naive": round(naive / cold, 2)},
        "loupe_import_openvino_warm": {"seconds": round(warm, 2), "img_s": round(n / warm, 1),
                                       "vs_naive": round(naive / warm, 2)},
        "loupe_import_torch": {"seconds": round(torch_path, 2), "img_s": round(n / torch_path, 1),
                               "vs_naive": round(naive / torch_path, 2)},
        "cli_search_start_to_answer_s": {"openvino_cached": round(min(search_times), 2),
                                         "openvino_runs": [round(t, 2) for t in search_times],
                                         "torch": round(torch_search, 2)},
        "targets": {"import_vs_naive": 3.0, "cli_start_to_first_embedding_s": 1.5},
    }
    for key, value in result.items():
        print(f"{key}: {value}")
    print(f"written to {write_result('import_speed', result)}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
