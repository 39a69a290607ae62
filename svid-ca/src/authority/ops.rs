//! Slot transitions: the scheduled rotation and the operator's forced moves.

use std::time::{Duration, SystemTime};

use super::{CaError, CertificateAuthority, Slot, SlotKind, SlotState};
use crate::CaConfig;

/// Applies the schedule to the slots of one kind at `now`; true if changed.
fn rotate_kind(
    slots: &mut Vec<Slot>,
    kind: SlotKind,
    config: &CaConfig,
    now: SystemTime,
) -> Result<bool, CaError> {
    let before = slots.len();
    slots.retain(|s| s.info.kind != kind || s.info.not_after > now);
    let mut changed = slots.len() != before;
    let active = find(slots, kind, SlotState::Active);
    let Some(active) = active else {
        // Start-up, or every key expired: activate the prepared key if any,
        // otherwise create one and activate it at once.
        if find(slots, kind, SlotState::Prepared).is_none() {
            slots.push(Slot::generate(kind, config, now)?);
        }
        activate_prepared(slots, kind)?;
        return Ok(true);
    };
    let info = &slots[active].info;
    let lifetime = info
        .not_after
        .duration_since(info.not_before)
        .unwrap_or(Duration::ZERO);
    let remaining = info.not_after.duration_since(now).unwrap_or(Duration::ZERO);
    // A key prepared before this call is in the bundle already published
    // (journaled and made current by an earlier call).
    let published = find(slots, kind, SlotState::Prepared).is_some();
    if !published && remaining <= config.rotation.prepare_threshold(lifetime) {
        slots.push(Slot::generate(kind, config, now)?);
        changed = true;
    }
    // Publish before use (FED-7): only an already published key becomes
    // active. When the schedule was missed (the process was down past the
    // activation point) the key prepared just now waits for the next call,
    // while the still valid active key keeps signing.
    if published && remaining <= config.rotation.activate_threshold(lifetime) {
        activate_prepared(slots, kind)?;
        changed = true;
    }
    Ok(changed)
}

fn find(slots: &[Slot], kind: SlotKind, state: SlotState) -> Option<usize> {
    slots
        .iter()
        .position(|s| s.info.kind == kind && s.info.state == state)
}

fn activate_prepared(slots: &mut [Slot], kind: SlotKind) -> Result<(), CaError> {
    let prepared =
        find(slots, kind, SlotState::Prepared).ok_or(CaError::NothingPrepared { kind })?;
    for s in slots.iter_mut() {
        if s.info.kind == kind && s.info.state == SlotState::Active {
            s.info.state = SlotState::Old;
        }
    }
    slots[prepared].info.state = SlotState::Active;
    Ok(())
}

fn find_old(slots: &[Slot], kind: SlotKind, id: &str) -> Result<usize, CaError> {
    let index = slots
        .iter()
        .position(|s| s.info.kind == kind && s.info.id == id)
        .ok_or_else(|| CaError::UnknownAuthority {
            kind,
            id: id.to_owned(),
        })?;
    match slots[index].info.state {
        SlotState::Old => Ok(index),
        state => Err(CaError::NotOld {
            id: id.to_owned(),
            state,
        }),
    }
}

impl CertificateAuthority {
    /// Brings both key kinds up to date with the rotation schedule at the
    /// clock's current time: drops expired keys, prepares and activates
    /// keys when their thresholds are reached. Call it periodically (every
    /// few seconds to a minute); returns whether anything changed.
    ///
    /// A key is activated only if it was prepared, and so published, by an
    /// earlier call: if both thresholds have passed since the last call,
    /// this call prepares the key and a later one activates it. Only when
    /// no key is active (first start, or every key expired) is a new key
    /// made active at once.
    pub fn rotate(&self) -> Result<bool, CaError> {
        self.apply(|slots, now| {
            let x = rotate_kind(slots, SlotKind::X509, &self.config, now)?;
            let j = rotate_kind(slots, SlotKind::Jwt, &self.config, now)?;
            Ok((x || j, x || j))
        })
    }

    /// Prepares a new key of `kind` now and publishes it in the bundle.
    /// Returns its id. Fails if a key is already prepared.
    pub fn prepare(&self, kind: SlotKind) -> Result<String, CaError> {
        self.apply(|slots, now| {
            if let Some(i) = find(slots, kind, SlotState::Prepared) {
                return Err(CaError::AlreadyPrepared {
                    kind,
                    id: slots[i].info.id.clone(),
                });
            }
            let slot = Slot::generate(kind, &self.config, now)?;
            let id = slot.info.id.clone();
            slots.push(slot);
            Ok((true, id))
        })
    }

    /// Makes the prepared key of `kind` active; the active one becomes OLD.
    pub fn activate(&self, kind: SlotKind) -> Result<(), CaError> {
        self.apply(|slots, _| {
            activate_prepared(slots, kind)?;
            Ok((true, ()))
        })
    }

    /// Marks the OLD key `id` as tainted: SVIDs it signed should be
    /// replaced. It stays in the bundle until revoked or expired.
    pub fn taint(&self, kind: SlotKind, id: &str) -> Result<(), CaError> {
        self.apply(|slots, _| {
            let i = find_old(slots, kind, id)?;
            if slots[i].info.tainted {
                return Err(CaError::AlreadyTainted { id: id.to_owned() });
            }
            slots[i].info.tainted = true;
            Ok((true, ()))
        })
    }

    /// Removes the tainted OLD key `id` from the bundle: everything it
    /// signed stops verifying.
    pub fn revoke(&self, kind: SlotKind, id: &str) -> Result<(), CaError> {
        self.apply(|slots, _| {
            let i = find_old(slots, kind, id)?;
            if !slots[i].info.tainted {
                return Err(CaError::NotTainted { id: id.to_owned() });
            }
            slots.remove(i);
            Ok((true, ()))
        })
    }

    /// Whether `id` names a tainted key (callers renew SVIDs it signed).
    pub fn is_tainted(&self, id: &str) -> bool {
        self.authorities().iter().any(|a| a.id == id && a.tainted)
    }
}
