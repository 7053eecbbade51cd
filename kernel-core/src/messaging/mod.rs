//! What crosses between services: the default [`Event`](message::Event)/[`Reply`](message::Reply)
//! protocol and its status codes, and the worker pool that runs pushed events.

pub(crate) mod message;
pub(crate) mod push;
