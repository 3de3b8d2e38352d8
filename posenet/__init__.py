"""posenas.posenet: pose data (``pose``) and the networks that predict it (``nets``).

``pose`` knows people, images, maps and scores and nothing of networks; ``nets`` builds, trains and exports
networks and reads the pose data through ``pose``.
"""
