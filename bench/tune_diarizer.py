"""Grid search for the bundled diarizer's hyper-parameters, on the development clips only.

Tuning data: AMI dev00, dev01 and the two joined (which catches the
over-splitting a setting tuned on 30-s clips shows on longer audio). The sample
and the tst clips are never scored here: they stay held out for the tests and
`bench/der.py`. Objective: mean collar-0 DER with the speaker count unknown;
ties go to settings that find the right number of speakers on every clip.

    .venv/bin/python bench/tune_diarizer.py      # about 5 minutes on two cores

Prints the best settings; copy them into ``BUNDLED_PARAMETERS`` in
``src/transcription/diarizer/engine.py``. ``--resegmentation`` then searches the
resegmentation step's settings (window, hop, smoothing, iterations, purity:
constants in ``src/transcription/diarizer/resegment.py``) on the pipeline's
output with ``BUNDLED_PARAMETERS``.
"""

from __future__ import annotations

import argparse
import itertools
import warnings

import der  # noqa: E402  (bench/ is on sys.path when this runs from it)
import torch

from transcription.audio import SAMPLE_RATE
from transcription.diarizer import resegment
from transcription.diarizer.engine import BUNDLED_PARAMETERS, build_bundled_pipeline, turns_from_annotation

SEGMENTATION_THRESHOLDS = (0.3, 0.4, 0.5, 0.6)
METHODS = ("centroid", "average")
MIN_CLUSTER_SIZES = (6, 12)
CLUSTERING_THRESHOLDS = tuple(round(0.30 + 0.02 * i, 2) for i in range(21))  # 0.30 .. 0.70
DEVELOPMENT = ("dev00", "dev01", "ami-dev-1min")


RESEGMENTATION_GRID = {
    "WINDOW_SECONDS": (0.75, 1.0, 1.25, 1.5, 2.0),
    "HOP_SECONDS": (0.25, 0.5),
    "SMOOTHING_SECONDS": (0.02, 0.2, 0.5),
    "ITERATIONS": (1, 2, 3),
    "PURITY": (0.6, 0.8, 0.95),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resegmentation", action="store_true", help="search the resegmentation settings instead")
    args = parser.parse_args()
    torch.set_num_threads(1)
    recordings = [r for r in der.recordings() if r.name in DEVELOPMENT]
    files = {r.name: {"waveform": torch.from_numpy(r.waveform)[None], "sample_rate": 16_000, "uri": r.name} for r in recordings}
    pipeline = build_bundled_pipeline()
    if args.resegmentation:
        tune_resegmentation(pipeline, recordings, files)
        return
    pipeline.training = True  # pyannote then caches segmentation, and embeddings per segmentation threshold
    results = []
    for seg_threshold, method, min_size, threshold in itertools.product(
        SEGMENTATION_THRESHOLDS, METHODS, MIN_CLUSTER_SIZES, CLUSTERING_THRESHOLDS
    ):
        params = {
            "segmentation": {"threshold": seg_threshold, "min_duration_off": 0.0},
            "clustering": {"method": method, "min_cluster_size": min_size, "threshold": threshold},
        }
        pipeline.instantiate(params)
        ders, right_count = [], 0
        for recording in recordings:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                turns = turns_from_annotation(pipeline(files[recording.name]))
            ders.append(der.score(recording, turns)[0])
            right_count += len({t.speaker for t in turns}) == recording.num_speakers
        results.append((sum(ders) / len(ders), -right_count, params, ders))
        print(f"{results[-1][0]:.3f} right={right_count} {params}", flush=True)
    results.sort(key=lambda r: (r[1], r[0]))  # every count right first, then lowest DER
    print("\nbest (count right on every development clip first, then mean collar-0 DER):")
    for mean, wrong, params, ders in results[:5]:
        print(f"  mean {mean:.1%}  per clip {[f'{d:.1%}' for d in ders]}  right counts {-wrong}/{len(DEVELOPMENT)}  {params}")


def tune_resegmentation(pipeline, recordings, files) -> None:
    pipeline.instantiate(BUNDLED_PARAMETERS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = {r.name: turns_from_annotation(pipeline(files[r.name])) for r in recordings}
    windows: dict = {}

    def embed_windows(name):
        def embed(waveform, window, hop):  # the windows depend on (window, hop) only: computed once each
            if (name, window, hop) not in windows:
                windows[name, window, hop] = pipeline.embedding.embed_windows(waveform, window, hop)
            return windows[name, window, hop]

        return embed

    results = []
    for values in itertools.product(*RESEGMENTATION_GRID.values()):
        settings = dict(zip(RESEGMENTATION_GRID, values))
        for name, value in settings.items():
            setattr(resegment, name, value)
        ders = [der.score(r, resegment.resegment(found[r.name], r.waveform, SAMPLE_RATE, embed_windows(r.name)))[0] for r in recordings]
        results.append((sum(ders) / len(ders), settings, ders))
        print(f"{results[-1][0]:.3f} {settings}", flush=True)
    results.sort(key=lambda r: r[0])
    print("\nbest (mean collar-0 DER on the development clips):")
    for mean, settings, ders in results[:8]:
        print(f"  mean {mean:.1%}  per clip {[f'{d:.1%}' for d in ders]}  {settings}")


if __name__ == "__main__":
    main()
