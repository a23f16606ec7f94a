"""The reader registry: for each dataset partition, the original layouts it may arrive in, in
the order they are tried. Adding a dataset format = one reader module + one line here."""

from __future__ import annotations

from fer_data.readers.base import Reader, ReadOptions, Record, Reject, Scan
from fer_data.readers.ckplus import CkPlusReader
from fer_data.readers.fer2013_csv import Fer2013CsvReader
from fer_data.readers.folders import FolderReader, parse_ckplus_name
from fer_data.readers.named import JAFFE, KDEF
from fer_data.readers.ravdess import RavdessReader

READERS: dict[str, tuple[Reader, ...]] = {
    "fer2013": (Fer2013CsvReader(), FolderReader(name="fer2013_folders")),
    "face_expression": (FolderReader(),),
    "ckplus": (CkPlusReader(), FolderReader(name="ckplus48", parse_name=parse_ckplus_name)),
    "kdef": (KDEF,),
    "jaffe": (JAFFE,),
    "ravdess": (RavdessReader(),),
}
DATASETS: tuple[str, ...] = tuple(READERS)

# Where each dataset comes from, for the "dataset missing" message and the dataset card.
SOURCES: dict[str, str] = {
    "fer2013": "FER2013 (Goodfellow et al., ICML 2013 challenge): kaggle.com/datasets/deadskull7/"
    "fer2013 (fer2013.csv) or kaggle.com/datasets/msambare/fer2013 (image folders); FER+ votes "
    "from github.com/microsoft/FERPlus. Research use.",
    "face_expression": "Kaggle 'Face expression recognition dataset' (jonathanoheix) or any "
    "<split>/<class>/ folder set. Licence varies by uploader; it repackages FER2013.",
    "ckplus": "Extended Cohn-Kanade (CK+), Lucey et al. 2010: request from the University of "
    "Pittsburgh (jeffcohn.net); CK+48 is a common Kaggle export. Non-commercial research only.",
    "kdef": "Karolinska Directed Emotional Faces, Lundqvist et al. 1998: kdef.se. Non-commercial "
    "research; some images may not be published.",
    "jaffe": "Japanese Female Facial Expression, Lyons et al. 1998: zenodo.org/record/3451524. "
    "Non-commercial research; agreement required.",
    "ravdess": "RAVDESS, Livingstone & Russo 2018: zenodo.org/record/1188976 "
    "(Video_Speech_Actor_XX.zip, Video_Song_Actor_XX.zip). CC BY-NC-SA 4.0.",
}

__all__ = ["DATASETS", "READERS", "SOURCES", "Reader", "ReadOptions", "Record", "Reject", "Scan"]
