/*
 * pose_group.h: the grouping step of both decoders (posenet/pose/grouping.py's assemble and _Grouping),
 * limb connections joined into people, then filtered, sorted and written out as poses.
 *
 * One source for both, included once by each decoder (pose_decode.c, pose_grid.c) after it has defined its
 * types and work buffers. It is a header of static functions rather than a separately compiled file
 * because the two decoders keep person scores in different precisions, on purpose: the upsampled
 * reference sums them in double, as Python's float64, to agree with grouping.py bit for bit; the grid
 * decoder sums them in float, the Cortex-M4's single-precision FPU (doubles there are software calls).
 * The includer names its types, limits and tables with these macros:
 *
 *   PGRP_SCORE, PGRP_COUNT             the person's score and count types
 *   PGRP_PERSON, PGRP_CONNECTION, PGRP_PEAK, PGRP_POSE, PGRP_CONFIG
 *   PGRP_NO_PEAK, PGRP_NUM_KEYPOINTS, PGRP_NUM_LIMBS, PGRP_MAX_PEOPLE, PGRP_NUM_REDUNDANT_LIMBS
 *   PGRP_LIMBS, PGRP_GROUPING_ORDER, PGRP_REDUNDANT_LIMBS
 *
 * and provides the work buffers s_peaks, s_conn, s_nconn, s_owner, s_people and s_order.
 */
#ifndef POSE_GROUP_H
#define POSE_GROUP_H

/* group_people is inlined early, into the decoder's own decode(), where the grouping loops lived before they
 * were shared: as a function inlined late, GCC allocated registers differently and the Cortex-M4 ran 0.7 %
 * more instructions for 4 people (185,040 against 183,680, bench_m4.py). */
#if defined(__GNUC__)
#define PGRP_INLINE __inline__ __attribute__((always_inline))
#else
#define PGRP_INLINE
#endif

/* Score of peak `id` at body slot `slot`. */
static PGRP_SCORE peak_score(int id, int slot, const int *first_id)
{
    return (PGRP_SCORE)s_peaks[slot][id - first_id[slot]].score;
}

/* One connection (_Grouping.connect): start a person, extend one, or merge two. */
static void connect(int *npeople, const PGRP_CONNECTION *conn, int limb, int redundant, const int *first_id)
{
    const int ends[2] = {conn->from, conn->to};
    const int slots[2] = {PGRP_LIMBS[limb][0], PGRP_LIMBS[limb][1]};
    const int owner0 = s_owner[ends[0]], owner1 = s_owner[ends[1]];
    const PGRP_SCORE affinity = (PGRP_SCORE)conn->affinity;
    if (owner0 == PGRP_NO_PEAK && owner1 == PGRP_NO_PEAK) {
        PGRP_PERSON *person;
        int k;
        if (redundant || *npeople >= PGRP_MAX_PEOPLE) {
            return;
        }
        person = &s_people[*npeople];
        for (k = 0; k < PGRP_NUM_KEYPOINTS; k++) {
            person->ids[k] = PGRP_NO_PEAK;
        }
        person->ids[slots[0]] = (int16_t)ends[0];
        person->ids[slots[1]] = (int16_t)ends[1];
        person->score = (peak_score(ends[0], slots[0], first_id) + peak_score(ends[1], slots[1], first_id)) + affinity;
        person->count = 2;
        person->merged = 0;
        s_owner[ends[0]] = s_owner[ends[1]] = (int16_t)*npeople;
        (*npeople)++;
    } else if (owner0 == PGRP_NO_PEAK || owner1 == PGRP_NO_PEAK) {
        const int held = owner0 != PGRP_NO_PEAK ? 0 : 1;
        const int index = held == 0 ? owner0 : owner1;
        const int peak = ends[1 - held], slot = slots[1 - held];
        PGRP_PERSON *person = &s_people[index];
        if (person->ids[slot] != PGRP_NO_PEAK) {
            return; /* the slot already holds a different peak */
        }
        person->ids[slot] = (int16_t)peak;
        s_owner[peak] = (int16_t)index;
        if (!redundant) {
            person->score += peak_score(peak, slot, first_id) + affinity;
            person->count += 1;
        }
    } else if (owner0 != owner1 && !redundant) {
        /* Merge two partial people with disjoint slots. As in Python, GROUPING_ORDER visits the limbs as a
         * tree from the neck, so the second end of a non-redundant limb is never owned yet and this branch
         * is not reached; it is kept so that the grouping is _Grouping's. */
        PGRP_PERSON *kept = &s_people[owner0], *merged = &s_people[owner1];
        int k;
        for (k = 0; k < PGRP_NUM_KEYPOINTS; k++) {
            if (merged->ids[k] != PGRP_NO_PEAK && kept->ids[k] != PGRP_NO_PEAK) {
                return; /* both fill some slot: two people, not halves of one */
            }
        }
        for (k = 0; k < PGRP_NUM_KEYPOINTS; k++) {
            if (merged->ids[k] != PGRP_NO_PEAK) {
                kept->ids[k] = merged->ids[k];
                s_owner[merged->ids[k]] = (int16_t)owner0;
            }
        }
        kept->score += merged->score + affinity;
        kept->count = (PGRP_COUNT)(kept->count + merged->count);
        merged->merged = 1;
    }
}

static int is_redundant(int limb)
{
    int i;
    for (i = 0; i < PGRP_NUM_REDUNDANT_LIMBS; i++) {
        if (PGRP_REDUNDANT_LIMBS[i] == limb) {
            return 1;
        }
    }
    return 0;
}

/* assemble: the `total` peaks' connections into people, in PGRP_GROUPING_ORDER; people with fewer than
 * min_keypoints keypoints or a mean score below min_mean_score dropped; the rest sorted by descending
 * score (stable: ties keep the order the people were started in) and the first max_poses written to
 * `poses`. Returns how many were written. */
static PGRP_INLINE int group_people(int total, const int *first_id, const PGRP_CONFIG *cfg, PGRP_POSE *poses, int max_poses)
{
    int k, i, j, npeople = 0, nout = 0;
    for (i = 0; i < total; i++) {
        s_owner[i] = PGRP_NO_PEAK;
    }
    for (i = 0; i < PGRP_NUM_LIMBS; i++) {
        const int l = PGRP_GROUPING_ORDER[i], redundant = is_redundant(l);
        for (j = 0; j < s_nconn[l]; j++) {
            connect(&npeople, &s_conn[l][j], l, redundant, first_id);
        }
    }
    /* Filter, then a stable insertion sort by descending score. */
    for (i = 0; i < npeople; i++) {
        const PGRP_PERSON *person = &s_people[i];
        if (person->merged || person->count < cfg->min_keypoints ||
            !(person->score >= cfg->min_mean_score * (PGRP_SCORE)person->count)) {
            continue;
        }
        j = nout;
        while (j > 0 && s_people[s_order[j - 1]].score < person->score) {
            s_order[j] = s_order[j - 1];
            j--;
        }
        s_order[j] = i;
        nout++;
    }
    if (nout > max_poses) {
        nout = max_poses;
    }
    for (i = 0; i < nout; i++) {
        const PGRP_PERSON *person = &s_people[s_order[i]];
        PGRP_POSE *pose = &poses[i];
        for (k = 0; k < PGRP_NUM_KEYPOINTS; k++) {
            const int id = person->ids[k];
            if (id == PGRP_NO_PEAK) {
                pose->keypoints[k].x = pose->keypoints[k].y = pose->keypoints[k].score = 0.0f;
            } else {
                const PGRP_PEAK *peak = &s_peaks[k][id - first_id[k]];
                pose->keypoints[k].x = peak->x;
                pose->keypoints[k].y = peak->y;
                pose->keypoints[k].score = peak->score;
            }
        }
        pose->score = (float)person->score;
        pose->count = person->count;
    }
    return nout;
}

#endif /* POSE_GROUP_H */
