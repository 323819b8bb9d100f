"""A DICOM Structured Report of anomed's result: TID 1500 (Measurement Report) via highdicom.

One measurement group per scored input (a volume: one group referencing all its instances; a
series of 2D images: one group per image), each holding
- the anomaly score as a numeric measurement (code `anomaly-score` in the private scheme
  99ANOMED, no units), with the algorithm (anomed <method>, anomed's version, and as
  parameters the preset, the backbone, the threshold and "research use, not for diagnosis");
- the decision at the calibrated threshold as a qualitative evaluation: Finding = Abnormal or
  Normal (none when the checkpoint was saved without a threshold).

The report is RESEARCH content, said in its series description as well. Reading back:
`read_sr_results` returns the same numbers (used by the tests and `anomed pacs status`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pydicom

from anomed._version import __version__

SCORE = ("anomaly-score", "99ANOMED", "Anomaly score")
RESEARCH = "research use, not for diagnosis"
SR_DESCRIPTION = f"anomed anomaly report: {RESEARCH}"


@dataclass
class ScoredItem:
    """One scored input: the instances it came from, its score and decision."""

    instances: list[pydicom.Dataset]
    score: float
    decision: str | None  # "abnormal" / "normal"; None without a threshold


@dataclass
class ModelLabel:
    """What the report says produced the numbers."""

    method: str
    preset: str
    backbone: str  # e.g. "ViT-B-16-plus-240 (laion400m_e32)" or "anomed-tiny (random-init)"
    threshold: float | None


def _algorithm(label: ModelLabel):
    import highdicom as hd

    threshold = "none (uncalibrated)" if label.threshold is None else f"{label.threshold:.9g}"
    return hd.sr.AlgorithmIdentification(
        name=f"anomed {label.method}"[:64],
        version=__version__,
        parameters=[
            f"preset={label.preset}"[:64],
            f"backbone={label.backbone}"[:64],
            f"threshold={threshold}"[:64],
            RESEARCH,
        ],
    )


def _group(item: ScoredItem, label: ModelLabel, number: int):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    measurement = hd.sr.Measurement(
        name=hd.sr.CodedConcept(*SCORE),
        value=float(item.score),
        unit=codes.UCUM.NoUnits,
        algorithm_id=_algorithm(label),
    )
    evaluations = []
    if item.decision is not None:
        value = codes.SCT.Abnormal if item.decision == "abnormal" else codes.SCT.Normal
        evaluations.append(hd.sr.QualitativeEvaluation(name=codes.DCM.Finding, value=value))
    sources = [
        hd.sr.SourceImageForMeasurementGroup(ds.SOPClassUID, ds.SOPInstanceUID)
        for ds in item.instances
    ]
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=hd.UID(), identifier=f"anomed anomaly {number}"
        ),
        algorithm_id=_algorithm(label),
        measurements=[measurement],
        qualitative_evaluations=evaluations or None,
        source_images=sources,
    )


def write_sr(
    items: list[ScoredItem],
    label: ModelLabel,
    path: Path,
    series_number: int = 1002,
) -> Path:
    """A Comprehensive 3D SR (TID 1500) of `items` in the source study, saved at `path`."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    evidence = [ds for item in items for ds in item.instances]
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=hd.UID(), name="anomed", manufacturer_name="anomed", model_name=label.method[:64]
    )
    context = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device, observer_identifying_attributes=device
        )
    )
    report = hd.sr.MeasurementReport(
        observation_context=context,
        procedure_reported=codes.SCT.Imaging,
        imaging_measurements=[_group(item, label, i + 1) for i, item in enumerate(items)],
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=report[0],
        series_instance_uid=hd.UID(),
        series_number=int(evidence[0].get("SeriesNumber", 0) or 0) + series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="anomed",
        is_complete=True,
        series_description=SR_DESCRIPTION,
    )
    sr.save_as(path)
    return path


def read_sr_results(sr: pydicom.Dataset) -> list[dict]:
    """Per measurement group: the source SOP Instance UIDs, the score and the decision."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    out = []
    for group in hd.sr.Comprehensive3DSR.from_dataset(sr).content.get_image_measurement_groups():
        score = next(m.value for m in group.get_measurements() if m.name.value == SCORE[0])
        decision = None
        for item in group[0].ContentSequence:  # the group's container
            name = item.ConceptNameCodeSequence[0]
            if item.ValueType == "CODE" and name.CodeValue == codes.DCM.Finding.value:
                value = item.ConceptCodeSequence[0].CodeValue
                decision = "abnormal" if value == codes.SCT.Abnormal.value else "normal"
        sources = [s.referenced_sop_instance_uid for s in group.source_images]
        out.append({"sources": sources, "score": float(score), "decision": decision})
    return out
