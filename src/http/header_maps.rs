//! Header maps reused per worker thread, instead of allocated for every
//! request and freed again.
//!
//! A request head's `HeaderMap` makes two allocations (its index and its
//! entries). Freed as soon as the head is written upstream, they come
//! straight back from glibc's per-thread cache for the next request; but a
//! retrying route keeps the head it sent until the response is in, and
//! with many requests in flight the cache (seven blocks a size) runs dry:
//! glibc's slower paths then cost a retrying request ~240 instructions
//! (callgrind, against the same run with a larger cache). Maps given back
//! here once their request is done with them are cleared, keeping their
//! memory, and the parser takes them before allocating.

use http::HeaderMap;
use std::cell::RefCell;

/// Maps kept per thread: enough for the requests a worker has in flight.
const MAX_MAPS: usize = 64;
/// Larger maps (an unusual head) are not kept.
const MAX_CAPACITY: usize = 128;

thread_local! {
    static MAPS: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
}

/// An empty map with room for `capacity` headers: a reused one when the
/// thread has one.
pub fn take(capacity: usize) -> HeaderMap {
    if let Some(mut map) = MAPS.with(|m| m.borrow_mut().pop())
        && map.try_reserve(capacity).is_ok()
    {
        return map;
    }
    HeaderMap::with_capacity(capacity)
}

/// Gives `map` back for reuse (dropped instead when the thread keeps enough
/// or it is unusually large).
pub fn give_back(mut map: HeaderMap) {
    let capacity = map.capacity();
    if capacity == 0 || capacity > MAX_CAPACITY {
        return;
    }
    map.clear();
    MAPS.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() < MAX_MAPS {
            m.push(map);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn a_reused_map_comes_back_empty_with_room() {
        let mut map = take(4);
        map.insert("x-a", HeaderValue::from_static("1"));
        map.append("x-a", HeaderValue::from_static("2"));
        let before = map.capacity();
        give_back(map);
        let again = take(4);
        assert!(again.is_empty());
        assert!(again.get("x-a").is_none());
        assert_eq!(again.capacity(), before, "the same map, its memory kept");
        let bigger = take(200);
        assert!(bigger.capacity() >= 200);
    }

    #[test]
    fn the_thread_keeps_a_bounded_number_of_ordinary_maps() {
        for _ in 0..MAX_MAPS + 10 {
            give_back(HeaderMap::with_capacity(8));
        }
        give_back(HeaderMap::with_capacity(10 * MAX_CAPACITY));
        let kept = MAPS.with(|m| m.borrow().len());
        assert_eq!(kept, MAX_MAPS);
        assert!(MAPS.with(|m| m.borrow().iter().all(|m| m.capacity() <= MAX_CAPACITY)));
    }
}
