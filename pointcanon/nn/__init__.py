"""Neural modules: canonicalizers, up hypotheses, vector-neuron layers, backbones, ragged batches, kNN, the ConvCNP."""
from .backbones import BACKBONES, DGCNN, EdgeConv, PointNet, build_backbone
from .canonicalizer import Canonicalizer
from .candidates import CandidateCanonicalizer
from .vn_canonicalizer import VNCanonicalizer
from .approximate import ApproximateVNCanonicalizer, FixedInputs
from .convcnp import ConvCNP1d
from .hypotheses import HypothesisSelector
from .knn import farthest_point_sample, fixed_index_sample, knn
from .segmentation import SEGMENTERS, DGCNNSeg, PointNetSeg, build_segmenter
from .wrapper import CanonicalizedModel
from .vn import VNBatchNorm, VNInvariant, VNLeakyReLU, VNLinear, VNLinearLeakyReLU, VNMaxPool, vn_mean_pool

__all__ = ["ApproximateVNCanonicalizer", "CandidateCanonicalizer", "Canonicalizer", "ConvCNP1d", "FixedInputs",
           "SEGMENTERS", "DGCNNSeg", "PointNetSeg", "build_segmenter", "BACKBONES", "CanonicalizedModel",
           "HypothesisSelector", "DGCNN", "EdgeConv", "PointNet", "build_backbone", "VNBatchNorm", "VNCanonicalizer",
           "VNInvariant", "VNLeakyReLU", "VNLinear", "VNLinearLeakyReLU", "VNMaxPool", "farthest_point_sample",
           "fixed_index_sample", "knn", "vn_mean_pool"]
