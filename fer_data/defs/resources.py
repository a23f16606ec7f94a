"""Dagster resources shared by the assets: where data lives, the face detectors, and the
settings that more than one stage reads (one owner each, checked together when a run starts)."""

from typing import Literal

from dagster import ConfigurableResource
from pydantic import Field, PrivateAttr, model_validator

from fer_data.classifier import VIT_PATCH_SIZE, check_patch_size
from fer_data.detectors import Detector, HaarDetector, MtcnnDetector
from fer_data.faces import CropOptions
from fer_data.labels import CLASS_SETS, class_names
from fer_data.storage import StorageLayout


class StorageResource(ConfigurableResource):
    """Where raw data is read and tables and curated datasets are written. Unset fields fall
    back to FER_RAW_DIR / FER_STORAGE_DIR / FER_CURATED_DIR, read when a run starts, then to
    raw/, $DAGSTER_HOME/storage and curated/ in the project folder."""

    raw_dir: str | None = Field(None, description="Raw datasets root.")
    storage_dir: str | None = Field(
        None, description="Intermediate tables root, local path or fsspec URL such as s3://...")
    curated_dir: str | None = Field(
        None, description="Published datasets root, local path or fsspec URL.")

    def layout(self) -> StorageLayout:
        return StorageLayout.from_env(self.raw_dir, self.storage_dir, self.curated_dir)


class PipelineSettings(ConfigurableResource):
    """Settings that several stages read. Each has this one owner; a combination that cannot
    work fails when the run starts, before any step does work."""

    face_size: int = Field(
        CropOptions.face_size, description="Side of the square gray face crops (faces stage); "
        "StarGAN resizes to its profile's image size and back, the classifiers train at this "
        "size.")
    class_set: str = Field("fer7", description=f"The class set StarGAN learns (its domains), "
                           f"the judge and the downstream classifiers predict, always published; "
                           f"one of {sorted(CLASS_SETS)}.")
    target_class: str = Field("disgust", description="The class StarGAN's synthetic faces top "
                              "up: its judge hit rate picks the checkpoint, the experiment "
                              "reports its F1. Must be in the class set.")
    top_up_to: str = Field("fear", description="The target class is topped up to this class's "
                           "training count (the source project used fear's), 'max' (the "
                           "largest class) or a number; the experiment's oversampled variant "
                           "aims at the same count.")
    vit_patch_size: int = Field(VIT_PATCH_SIZE, description="ViT-Tiny patch side: must divide "
                                "face_size; saved with each trained ViT.")

    @model_validator(mode="after")
    def _agree(self) -> "PipelineSettings":
        if self.face_size < 16:
            raise ValueError(f"face_size {self.face_size} is too small: set at least 16 (48 is "
                             "the FER2013 size)")
        if self.class_set not in CLASS_SETS:
            raise ValueError(f"class_set {self.class_set!r} is not one of {sorted(CLASS_SETS)}")
        check_patch_size(self.face_size, self.vit_patch_size)
        classes = class_names(self.class_set)
        if self.target_class not in classes:
            raise ValueError(f"target_class {self.target_class!r} is not in class set "
                             f"{self.class_set} ({', '.join(classes)}): set settings."
                             f"target_class to one of them")
        if not (self.top_up_to in ("max", *classes) or self.top_up_to.isdigit()) or \
                self.top_up_to == self.target_class:
            raise ValueError(f"top_up_to {self.top_up_to!r}: set it to another class of "
                             f"{self.class_set} ({', '.join(classes)}), 'max' or a number")
        return self


class FaceDetector(ConfigurableResource):
    """The face detectors: MTCNN (facenet-pytorch) and OpenCV's Haar cascade."""

    device: Literal["cpu", "cuda", "auto"] = Field("cpu", description="Where MTCNN runs.")
    mtcnn_batch_size: int = Field(
        MtcnnDetector.batch_size, description="Equal-size images per MTCNN call: batches pay on a "
        "GPU; on CPU one image at a time measured faster (bench/faces.py).")
    mtcnn_min_face_size: int = Field(
        MtcnnDetector.min_face_size, description="Smallest face MTCNN looks for (pixels).")
    mtcnn_large_face_fraction: float = Field(
        MtcnnDetector.large_face_fraction, description="MTCNN's image pyramid runs coarse to "
        "fine: an image whose chosen face spans at least this share of its shorter side skips the "
        "levels for faces under half that size (posed datasets: about 3x faster, the same chosen "
        "face on every real photo and frame measured; bench/faces.py). 0: always the whole "
        "pyramid.")
    haar_min_neighbors: int = Field(
        HaarDetector.min_neighbors, description="Haar cascade minNeighbors.")
    _detectors: dict = PrivateAttr(default_factory=dict)

    def get(self, name: str) -> Detector:
        if name not in self._detectors:
            if name == "mtcnn":
                self._detectors[name] = MtcnnDetector(self.device, self.mtcnn_batch_size,
                                                      self.mtcnn_min_face_size,
                                                      self.mtcnn_large_face_fraction)
            elif name == "haar":
                self._detectors[name] = HaarDetector(min_neighbors=self.haar_min_neighbors)
            elif name == "haar_quality":
                # a face crop's face fills it: no eye search, no small faces (measured: the
                # same flags as the full cascade at a fraction of the time; bench/faces.py)
                self._detectors[name] = HaarDetector(min_neighbors=self.haar_min_neighbors,
                                                     min_size_fraction=1 / 3, find_eyes=False)
            else:
                raise ValueError(f"unknown detector {name!r}; choose from mtcnn, haar, none")
        return self._detectors[name]


RESOURCES = {"storage_resource": StorageResource(), "face_detector": FaceDetector(),
             "settings": PipelineSettings()}
