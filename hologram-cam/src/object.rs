//! Objects: bytes together with the address they hash to.

use crate::CamError;
use crate::SharedBytes;
use hologram_lattice::Address;

/// An object whose bytes are known to hash to its address.
///
/// The only ways to make one are [`Object::new`] (which computes the address)
/// and [`Object::verify`] (which checks it), so a value of this type is
/// proof that the check was done: stores take and return `Object`s, and a
/// tampered object can never be stored or cached. The bytes are shared, so
/// clones are cheap.
///
/// ```
/// use hologram_cam::Object;
/// let obj = Object::new(b"HELLO WORLD".to_vec());
/// assert!(Object::verify(obj.address(), b"HELLO WORLd".to_vec()).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Object {
    address: Address,
    data: SharedBytes,
}

impl Object {
    /// The object of `data`: its address is computed.
    pub fn new(data: impl Into<SharedBytes>) -> Self {
        let data = data.into();
        Self {
            address: Address::of(&data),
            data,
        }
    }

    /// The object at `address`, if `data` hashes to it.
    pub fn verify(address: Address, data: impl Into<SharedBytes>) -> Result<Self, CamError> {
        let data = data.into();
        let actual = Address::of(&data);
        if actual == address {
            Ok(Self { address, data })
        } else {
            Err(CamError::AddressMismatch {
                expected: address,
                actual,
            })
        }
    }

    /// The address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The bytes.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The shared bytes (a clone shares the buffer).
    pub fn shared_data(&self) -> SharedBytes {
        self.data.clone()
    }

    /// The number of bytes.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the object is empty.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}
