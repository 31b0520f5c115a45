"""Modality-free core: groups, the canonicalization result, frames, priors, metrics, checks."""
from .equivariance import EquivarianceReport, evaluate_equivariance, learned_equivariance
from .frames import frame_from_vectors
from .groups import (apply_rigid, cyclic_rotations, geodesic_angle, random_o3, random_rigid_motion,
                     random_rotation_about_axis, random_rotations, random_so3, rotation_about_axis)
from .metrics import accuracy, mean_class_accuracy
from .priors import PRIORS, EmpiricalPrior, discrete_prior, empirical_distribution, identity_prior, upright_prior
from .result import Canonicalization
from .validation import check_points

__all__ = ["EquivarianceReport", "evaluate_equivariance", "learned_equivariance", "Canonicalization", "PRIORS", "accuracy", "apply_rigid", "check_points", "cyclic_rotations",
           "EmpiricalPrior", "discrete_prior", "empirical_distribution", "frame_from_vectors", "geodesic_angle", "identity_prior", "mean_class_accuracy",
           "random_o3", "random_rigid_motion", "random_rotation_about_axis", "random_rotations", "random_so3",
           "rotation_about_axis", "upright_prior"]
