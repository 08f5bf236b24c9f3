//! Envoy's shared data in memory, with its compare-and-swap semantics, shared by several
//! "workers" in a test; `interleave` runs another worker's step between a worker's read and
//! its next write, the moment races happen in.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use wasm_iap::core::shared_data::SharedData;

type Step = Box<dyn FnOnce(&mut Store)>;

#[derive(Default)]
pub struct Store {
    values: HashMap<String, (Vec<u8>, u32)>,
    next_version: u32,
}

impl Store {
    pub fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.values.get(key) {
            Some((value, version)) => (Some(value.clone()), Some(*version)),
            None => (None, None),
        }
    }

    pub fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        if let (Some((_, version)), Some(cas)) = (self.values.get(key), cas) {
            if *version != cas {
                return false;
            }
        }
        self.next_version += 1;
        self.values
            .insert(key.to_string(), (value.to_vec(), self.next_version));
        true
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }
}

/// One worker's view of the shared store.
#[derive(Clone, Default)]
pub struct Worker {
    store: Rc<RefCell<Store>>,
    before_next_write: Rc<RefCell<Option<Step>>>,
}

impl Worker {
    /// Another worker on the same store.
    pub fn sibling(&self) -> Worker {
        Worker {
            store: Rc::clone(&self.store),
            before_next_write: Rc::default(),
        }
    }

    /// Runs `step` (another worker's doing) just before this worker's next write.
    pub fn interleave(&self, step: impl FnOnce(&mut Store) + 'static) {
        *self.before_next_write.borrow_mut() = Some(Box::new(step));
    }

    pub fn keys(&self) -> usize {
        self.store.borrow().len()
    }
}

impl SharedData for Worker {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.store.borrow().get(key)
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        if let Some(step) = self.before_next_write.borrow_mut().take() {
            step(&mut self.store.borrow_mut());
        }
        self.store.borrow_mut().set(key, value, cas)
    }
}

/// Lets a step written against `SharedData` run on the raw store inside `interleave`.
pub struct OnStore<'a>(pub &'a mut Store);

impl SharedData for OnStore<'_> {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.0.get(key)
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        self.0.set(key, value, cas)
    }
}
