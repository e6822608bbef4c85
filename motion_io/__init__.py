"""Motion import for real motion capture: rig profiles (rigs), the joint-name matcher for rigs
without a profile (joint_match), the canonicalisation of imported joints (retarget: resampling,
up axis, units, HumanML3D's uniform skeleton, placement, mirroring), labels and captions of
labelled takes (captions) and the stratified train/val/test split (splits).

`bvh.import_bvh` is the public entry point; `prepare_data.py` builds data sets with it.
"""
