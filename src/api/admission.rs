//! Admission control: how much image work (AddImage, SearchImage: a body of up to 8 MB, a
//! fetch, a decode, an inference) the server takes on at once, in total and per access key.
//! A request beyond either limit is answered 503 `ServiceUnavailable` at once — for an
//! upload, before its body is read — instead of queueing, so overload costs the server
//! almost nothing and memory stays bounded by the limits (README, "Overload").
//!
//! Two steps, because the body must be refused before it is read and the tenant is known
//! only after it is: [`Admission::admit_upload`] when the headers announce a large body,
//! [`Admission::admit`] once the request is authenticated. Not here: the embedding queue's
//! own bound (`vision::embedder`), connection limits (`connections`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;

/// A body larger than this is an image upload and needs a slot before it is read.
pub const UPLOAD_BODY_BYTES: u64 = 64 * 1024;

/// Limits on image work in progress.
#[derive(Debug, Clone, Copy)]
pub struct AdmissionLimits {
    /// Image requests in progress, all keys together.
    pub max_in_flight: usize,
    /// Image requests in progress for one access key.
    pub max_in_flight_per_key: usize,
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        Self {
            max_in_flight: 16,
            max_in_flight_per_key: 8,
        }
    }
}

pub struct Admission {
    slots: Arc<Semaphore>,
    per_key: Arc<Mutex<HashMap<String, usize>>>,
    limits: AdmissionLimits,
}

/// A server-wide slot taken for an upload before its body was read.
pub struct UploadSlot(OwnedSemaphorePermit);

/// Permission to do image work; frees its slots when dropped.
pub struct Ticket {
    _slot: OwnedSemaphorePermit,
    key: String,
    per_key: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut map = self.per_key.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

impl Admission {
    pub fn new(limits: AdmissionLimits) -> Self {
        let limits = AdmissionLimits {
            max_in_flight: limits.max_in_flight.max(1),
            max_in_flight_per_key: limits.max_in_flight_per_key.max(1),
        };
        Self {
            slots: Arc::new(Semaphore::new(limits.max_in_flight)),
            per_key: Arc::new(Mutex::new(HashMap::new())),
            limits,
        }
    }

    /// Whether a body announced by these headers is an upload: declared larger than
    /// [`UPLOAD_BODY_BYTES`], or chunked (of unknown length).
    pub fn is_upload(content_length: Option<u64>, chunked: bool) -> bool {
        content_length.map_or(chunked, |n| n > UPLOAD_BODY_BYTES)
    }

    /// The actions that fetch, decode and embed an image.
    pub fn is_image_action(action: &str) -> bool {
        matches!(action, "AddImage" | "SearchImage")
    }

    /// A server-wide slot for an upload, before its body is read, or 503 now.
    pub fn admit_upload(&self) -> Result<UploadSlot, ApiError> {
        self.slots
            .clone()
            .try_acquire_owned()
            .map(UploadSlot)
            .map_err(|_| self.busy())
    }

    /// Permission for `key` to do image work, reusing the upload's slot when it took one.
    pub fn admit(&self, key: &str, upload: Option<UploadSlot>) -> Result<Ticket, ApiError> {
        let slot = match upload {
            Some(UploadSlot(slot)) => slot,
            None => self
                .slots
                .clone()
                .try_acquire_owned()
                .map_err(|_| self.busy())?,
        };
        let mut map = self.per_key.lock().unwrap_or_else(PoisonError::into_inner);
        let n = map.entry(key.to_owned()).or_insert(0);
        if *n >= self.limits.max_in_flight_per_key {
            return Err(ApiError::ServiceUnavailable(format!(
                "This AccessKeyId already has {} image requests in progress, the most one key may \
                 have at once; retry when one has finished.",
                self.limits.max_in_flight_per_key
            )));
        }
        *n += 1;
        Ok(Ticket {
            _slot: slot,
            key: key.to_owned(),
            per_key: self.per_key.clone(),
        })
    }

    fn busy(&self) -> ApiError {
        ApiError::ServiceUnavailable(format!(
            "The server is busy: {} image requests are in progress, the most it takes at once; \
             retry shortly.",
            self.limits.max_in_flight
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_and_each_key_have_their_limits() {
        let a = Admission::new(AdmissionLimits {
            max_in_flight: 3,
            max_in_flight_per_key: 2,
        });
        let t1 = a.admit("k1", None).unwrap();
        let t2 = a.admit("k1", None).unwrap();
        // k1 is at its own limit; k2 is not.
        let e = a.admit("k1", None).err().unwrap();
        assert_eq!((e.code(), e.http_status()), ("ServiceUnavailable", 503));
        let t3 = a.admit("k2", None).unwrap();
        // The server is full: even an upload is refused before its body.
        assert!(a.admit_upload().is_err());
        drop(t1);
        let up = a.admit_upload().unwrap();
        assert!(
            a.admit("k2", None).is_err(),
            "the upload holds the free slot"
        );
        let t4 = a.admit("k2", Some(up)).unwrap();
        drop((t2, t3, t4));
        assert_eq!(a.slots.available_permits(), 3);
        assert!(a.per_key.lock().unwrap().is_empty());
    }

    #[test]
    fn what_counts_as_an_upload() {
        assert!(!Admission::is_upload(Some(2_000), false));
        assert!(Admission::is_upload(Some(3_000_000), false));
        assert!(Admission::is_upload(None, true));
        assert!(!Admission::is_upload(None, false)); // a GET
    }
}
