"""The embedded data set: procedurally animated human motions with HumanML3D-style captions.

Every motion is animated on HumanML3D's 22-joint skeleton with its real bone lengths
(utils.SKELETON_OFFSETS) as per-joint rotations fed through utils.forward_kinematics, and the
set is written in exactly the HumanML3D layout, so that dataset.py reads it like the real one:

    root/new_joint_vecs/S000123.npy   (T-1, 263) float32 features (utils.joints_to_features)
    root/new_joints/S000123.npy       (T-1, 22, 3) float32 joints recovered from those features
    root/texts/S000123.txt            captions, one a line: `caption#word/POS ...#0.0#0.0`
    root/train.txt val.txt test.txt   motion ids, split 80/10/10
    root/Mean.npy Std.npy             (263,) feature statistics of the train split
    root/labels.json                  {id: {"action", "actions", "params", "parts"}}
    root/DONE                         written last (JSON of the build settings)

How a motion is animated. A motion is one action or two actions in a row (ACTIONS lists them),
each with parameters (speed, steps, direction, hand or leg, height, repetitions) that its
captions name. An action writes keyframed animation channels into a timeline: the pelvis path
and heading, additive pelvis/spine/neck offsets, wrist targets of both arms in the chest frame
(elevation, azimuth, reach), and foot events (steps, flights, kicks). Feet are placed in the
world and stay exactly fixed while planted (a heel-off pivots the foot about its fixed toe);
the legs reach them by two-bone inverse kinematics from the hips, and the pelvis is lowered
smoothly wherever a planted foot would be out of reach. The lowest joint of a planted foot
(the toe) is at y = 0; only jumps, hops and runs leave the floor. All channels are smooth
(minimum-jerk ramps, C1 splines); the rotations of all 22 joints come from those channels
and go through utils.forward_kinematics, so bone lengths are exact.

Every motion is a pure function of (seed, index): a numpy Generator seeded with both, so a
build gives identical files whether it runs in one process or several.

Modules, in the order a motion passes through them:

    curves.py             minimum-jerk ramps, envelopes, splines, smooth noise
    body.py               skeleton measures, rest posture, foot roll, two-bone IK, rotations
    timeline.py           Timeline: the animation channels and foot events of one motion
    actions.py            the action table: parameters, sampling, animator of each action
    actions_locomotion.py walk/jog/run/backwards, sidestep, turn, spin, jumps, hops
    actions_gestures.py   squat, sit down, bow, kick, punch, wave, raise arms, clap
    render.py             timeline -> foot targets -> joint rotations -> joints
    lexicon.py, captions.py   caption vocabulary and tokens; the caption grammar
    motion.py             sample_parts, render_parts, generate_motion
    build.py              the data set on disk; `python -m synthetic`
    speeds.py             how fast a set's people move (speed, cadence, step length), the
                          measure the gaits are calibrated with (bench/bench_speeds.py)
"""
from .actions import ACTIONS, check_params, sample_params
from .body import ANKLE_HEIGHT
from .build import DONE_FILE, build_synthetic_dataset, ensure_synthetic_dataset, main, motion_id
from .captions import make_captions
from .lexicon import caption_tokens
from .motion import SyntheticMotion, generate_motion, render_parts, sample_parts
from .timeline import MotionTooLong

__all__ = ["ACTIONS", "ANKLE_HEIGHT", "DONE_FILE", "MotionTooLong", "SyntheticMotion", "build_synthetic_dataset",
           "caption_tokens", "check_params", "ensure_synthetic_dataset", "generate_motion", "main", "make_captions",
           "motion_id", "render_parts", "sample_params", "sample_parts"]
