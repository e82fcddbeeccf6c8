"""Self-contained HTML reports of an annotation folder (acceptance, rejections, canaries, usage, a
filterable sample of records with their spans highlighted) and of a trained model (training and PR
curves). ``openie4pp report DIR`` is the command; :func:`write_report` the library call."""

from openie4pp.report.annotation import AnnotationReport, SourceSentence, read_annotation_folder
from openie4pp.report.render import REPORT_NAME, ReportResult, folder_kind, write_report
from openie4pp.report.training import TrainingReport, read_model_folder

__all__ = ["REPORT_NAME", "AnnotationReport", "ReportResult", "SourceSentence", "TrainingReport",
           "folder_kind", "read_annotation_folder", "read_model_folder", "write_report"]
