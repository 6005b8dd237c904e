"""Evaluation of frozen backbones: linear probe, k-NN, revisited Oxford/Paris retrieval, result files."""

from dinov2.eval.results import RESULT_SCHEMA, ResultError, validate_result, write_result
from dinov2.eval.revisited import compute_ap, compute_map, evaluate_revisited, protocol_gnd

__all__ = ["RESULT_SCHEMA", "ResultError", "validate_result", "write_result", "compute_ap", "compute_map",
           "evaluate_revisited", "protocol_gnd"]
