"""Pose data: keypoints, image transforms, targets, the COCO loader, synthetic people, decoding, evaluation
and drawing. Nothing here knows about networks."""
