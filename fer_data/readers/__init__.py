"""The readers: one per original layout a dataset arrives in. Which dataset uses which (and in
what order they are tried) is the dataset registry's business: fer_data/datasets.py."""

from __future__ import annotations

from fer_data.readers.affectnet import AffectNetCsvReader, AffectNetNpyReader
from fer_data.readers.base import Reader, ReadOptions, Record, Reject, Scan
from fer_data.readers.ckplus import CkPlusReader
from fer_data.readers.expw import ExpwReader
from fer_data.readers.fer2013_csv import Fer2013CsvReader
from fer_data.readers.folders import FolderReader, parse_ckplus_name
from fer_data.readers.named import JAFFE, KDEF
from fer_data.readers.rafdb import RafdbReader
from fer_data.readers.ravdess import RavdessReader

__all__ = ["JAFFE", "KDEF", "AffectNetCsvReader", "AffectNetNpyReader", "CkPlusReader",
           "ExpwReader", "Fer2013CsvReader", "FolderReader", "RafdbReader", "RavdessReader",
           "ReadOptions", "Reader", "Record", "Reject", "Scan", "parse_ckplus_name"]
