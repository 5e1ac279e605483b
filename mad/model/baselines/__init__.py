"""The paper's baselines (Table 4) and InceptionTime, each with MAD's model interface (see base.py)."""

from mad.model.baselines.base import BaselineModel
from mad.model.baselines.cfm import CFM, CFM_SMALL, CFMConfig
from mad.model.baselines.cmt import CMT, CMT_SMALL, CMTConfig
from mad.model.baselines.inception_time import INCEPTION_TIME, InceptionTime, InceptionTimeConfig
from mad.model.baselines.perceiver_io import PERCEIVER_IO, PerceiverIO, PerceiverIOConfig

# family -> (config class, model class); the family is stored in each config (and so in the sidecar).
BASELINE_FAMILIES = {
    PerceiverIOConfig.FAMILY: (PerceiverIOConfig, PerceiverIO),
    CMTConfig.FAMILY: (CMTConfig, CMT),
    CFMConfig.FAMILY: (CFMConfig, CFM),
    InceptionTimeConfig.FAMILY: (InceptionTimeConfig, InceptionTime),
}
BASELINE_PRESETS = {c.name: c for c in (PERCEIVER_IO, CMT_SMALL, CFM_SMALL, INCEPTION_TIME)}

__all__ = ["BASELINE_FAMILIES", "BASELINE_PRESETS", "CFM", "CMT", "BaselineModel", "CFMConfig", "CMTConfig",
           "InceptionTime", "InceptionTimeConfig", "PerceiverIO", "PerceiverIOConfig"]
