# Sourced by the scripts that run PyTorch beside ours (compare-pytorch.sh,
# airbench94-runs.sh): PyTorch $TORCH_VERSION from PyPI into $venv (set by the caller),
# installed on first use. `torch_works || install_torch` makes sure it is there.
#
# PyPI's Linux torch wheel is a CUDA build whose libtorch links the CUDA libraries, so
# `import torch` needs the nvidia-* wheels even on a CPU-only machine (about 4.4 GB in
# all); the Python packages the CPU never imports (triton, cuda-bindings) are left out.

TORCH_VERSION=2.15.0

torch_works() {
    [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "
import torch, safetensors.torch
assert torch.__version__.split('+')[0] == '$TORCH_VERSION', torch.__version__
torch.nn.functional.conv2d(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 3, 3))
" >/dev/null 2>&1
}

install_torch() {
    echo "pytorch-venv: installing PyTorch $TORCH_VERSION (CPU use) into $venv ..." >&2
    local start=$SECONDS
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --no-deps "torch==$TORCH_VERSION"
    # torch's own requirements for this platform, less the Python packages the CPU never
    # imports (triton compiles GPU kernels; cuda-bindings drives CUDA from Python). The
    # nvidia-*/cuda-toolkit ones stay: libtorch_cuda.so, which `import torch` loads, links them.
    local deps
    deps="$("$venv/bin/python" - <<'EOF'
import re
from importlib.metadata import requires
skip = {"triton", "cuda-bindings"}
for req in requires("torch") or []:
    spec, _, marker = req.partition(";")
    if "extra ==" in marker:
        continue
    name = re.split(r"[\[<>=~! ]", spec.strip(), maxsplit=1)[0].lower()
    if name not in skip:
        print(spec.strip())
EOF
)"
    mapfile -t deps_array <<<"$deps"
    "$venv/bin/pip" install --quiet "${deps_array[@]}" numpy safetensors
    echo "pytorch-venv: (pip's note that triton and cuda-bindings are missing is expected)" >&2
    echo "pytorch-venv: installed in $((SECONDS - start)) s, $(du -sh "$venv" | cut -f1)" >&2
    torch_works || {
        echo "pytorch-venv: PyTorch in $venv still does not import; see the pip output above" >&2
        exit 1
    }
}

