//! The request head a try sent upstream, kept so that a retry can send it
//! again (with only its attempt count changed).
//!
//! Over HTTP/1 the head comes back from the exchange once written: no copy.
//! hyper's HTTP/2 client takes the request, so the head is copied first;
//! the copy is a list of the header fields in a recycled buffer, not a
//! second `HeaderMap` (whose clone makes two allocations and frees them
//! again for every request on a retrying route, ~1,400 instructions a
//! request with the clone itself; callgrind). The `HeaderMap` is rebuilt
//! only when a retry happens.

use http::header::{HeaderName, HeaderValue};
use http::request::Parts;
use http::{HeaderMap, Method, Request, Uri, Version};
use std::cell::RefCell;

/// The head a try sent (see the module documentation).
pub enum SentHead {
    /// Given back by the HTTP/1 exchange after writing it.
    Parts(Parts),
    /// Copied before the request was handed to hyper.
    Copy(HeadCopy),
}

impl SentHead {
    /// A copy of `req`'s head (method, target, version, header fields).
    pub fn copy<B>(req: &Request<B>) -> SentHead {
        let mut headers = take_list(req.headers().len());
        headers.extend(req.headers().iter().map(|(k, v)| (k.clone(), v.clone())));
        SentHead::Copy(HeadCopy {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers,
        })
    }

    /// The head as a request's, to send again.
    pub fn into_parts(self) -> Parts {
        match self {
            SentHead::Parts(parts) => parts,
            SentHead::Copy(mut copy) => {
                let mut req = Request::new(());
                *req.method_mut() = std::mem::take(&mut copy.method);
                *req.uri_mut() = std::mem::take(&mut copy.uri);
                *req.version_mut() = copy.version;
                let mut map = HeaderMap::with_capacity(copy.headers.len());
                for (name, value) in copy.headers.drain(..) {
                    map.append(name, value);
                }
                *req.headers_mut() = map;
                req.into_parts().0
            }
        }
    }
}

/// A copied head; its field list goes back to the thread's free lists when
/// it is dropped.
pub struct HeadCopy {
    method: Method,
    uri: Uri,
    version: Version,
    headers: Vec<(HeaderName, HeaderValue)>,
}

type FieldList = Vec<(HeaderName, HeaderValue)>;

/// Lists kept per thread, and the largest list kept (in fields): enough
/// for the requests in flight on a worker without holding on to memory
/// for a rare huge head.
const MAX_LISTS: usize = 256;
const MAX_FIELDS: usize = 64;

thread_local! {
    static FREE: RefCell<Vec<FieldList>> = const { RefCell::new(Vec::new()) };
}

fn take_list(len: usize) -> FieldList {
    let recycled = FREE.with(|f| f.borrow_mut().pop());
    let mut list = recycled.unwrap_or_default();
    list.reserve(len);
    list
}

impl Drop for HeadCopy {
    fn drop(&mut self) {
        let mut list = std::mem::take(&mut self.headers);
        if list.capacity() == 0 || list.capacity() > MAX_FIELDS {
            return;
        }
        list.clear();
        FREE.with(|f| {
            let mut f = f.borrow_mut();
            if f.len() < MAX_LISTS {
                f.push(list);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Request<()> {
        Request::builder()
            .method(Method::POST)
            .uri("http://svc.local/a?b=c")
            .version(Version::HTTP_2)
            .header("x-a", "1")
            .header("x-a", "2")
            .header("content-type", "text/plain")
            .body(())
            .unwrap_or_default()
    }

    #[test]
    fn a_copy_gives_back_the_same_head_with_repeated_fields_in_order() {
        let req = request();
        for _ in 0..3 {
            // Again and again: the recycled lists must come back empty.
            let parts = SentHead::copy(&req).into_parts();
            assert_eq!(parts.method, Method::POST);
            assert_eq!(parts.uri, "http://svc.local/a?b=c");
            assert_eq!(parts.version, Version::HTTP_2);
            let a: Vec<_> = parts.headers.get_all("x-a").iter().collect();
            assert_eq!(a, ["1", "2"]);
            assert_eq!(parts.headers.len(), 3);
        }
    }

    #[test]
    fn dropped_copies_are_recycled_within_bounds() {
        let req = request();
        let copies: Vec<_> = (0..MAX_LISTS + 10).map(|_| SentHead::copy(&req)).collect();
        drop(copies);
        let kept = FREE.with(|f| f.borrow().len());
        assert_eq!(kept, MAX_LISTS);
        assert!(FREE.with(|f| f.borrow().iter().all(|l| l.is_empty())));
    }
}
