//! CBOR encoding as the protocol writes it.
//!
//! cbor4ii encodes serde's unit as an empty array, and `serde_json::Value`
//! serializes `null` as a unit: through cbor4ii alone, every JSON `null` in
//! a payload, a result or capability metadata would reach the peer as `[]`.
//! [`to_vec`] wraps cbor4ii's serializer so that a unit is written as CBOR
//! `null` (`0xf6`), as JSON's data model has it; everything else passes
//! through unchanged.

use std::collections::TryReserveError;

use cbor4ii::core::utils::BufWriter;
use cbor4ii::serde::EncodeError;
use serde::Serialize;
use serde::ser::{self, Serializer};

/// Encodes `value` as one CBOR data item, a unit (JSON's `null`) as `null`.
pub(crate) fn to_vec<T: Serialize + ?Sized>(
    value: &T,
) -> Result<Vec<u8>, EncodeError<TryReserveError>> {
    let mut serializer = cbor4ii::serde::Serializer::new(BufWriter::new(Vec::new()));
    value.serialize(UnitAsNull(&mut serializer))?;
    Ok(serializer.into_inner().into_inner())
}

/// A serializer, or one of its compound parts, that writes units as `null`
/// and wraps every value nested in it the same way.
struct UnitAsNull<S>(S);

/// A value to serialize through [`UnitAsNull`].
struct Nested<'a, T: ?Sized>(&'a T);

impl<T: Serialize + ?Sized> Serialize for Nested<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(UnitAsNull(serializer))
    }
}

/// Forwards scalar methods unchanged.
macro_rules! forward {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(fn $method(self, v: $ty) -> Result<Self::Ok, Self::Error> {
            self.0.$method(v)
        })*
    };
}

impl<S: Serializer> Serializer for UnitAsNull<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = UnitAsNull<S::SerializeSeq>;
    type SerializeTuple = UnitAsNull<S::SerializeTuple>;
    type SerializeTupleStruct = UnitAsNull<S::SerializeTupleStruct>;
    type SerializeTupleVariant = UnitAsNull<S::SerializeTupleVariant>;
    type SerializeMap = UnitAsNull<S::SerializeMap>;
    type SerializeStruct = UnitAsNull<S::SerializeStruct>;
    type SerializeStructVariant = UnitAsNull<S::SerializeStructVariant>;

    forward!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
    );

    fn serialize_unit(self) -> Result<Self::Ok, Self::Error> {
        self.0.serialize_none()
    }

    fn serialize_none(self) -> Result<Self::Ok, Self::Error> {
        self.0.serialize_none()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Self::Ok, Self::Error> {
        self.0.serialize_some(&Nested(value))
    }

    fn serialize_unit_struct(self, name: &'static str) -> Result<Self::Ok, Self::Error> {
        self.0.serialize_unit_struct(name)
    }

    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<Self::Ok, Self::Error> {
        self.0.serialize_unit_variant(name, index, variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<Self::Ok, Self::Error> {
        self.0.serialize_newtype_struct(name, &Nested(value))
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Self::Ok, Self::Error> {
        self.0
            .serialize_newtype_variant(name, index, variant, &Nested(value))
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, Self::Error> {
        self.0.serialize_seq(len).map(UnitAsNull)
    }

    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, Self::Error> {
        self.0.serialize_tuple(len).map(UnitAsNull)
    }

    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, Self::Error> {
        self.0.serialize_tuple_struct(name, len).map(UnitAsNull)
    }

    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, Self::Error> {
        self.0
            .serialize_tuple_variant(name, index, variant, len)
            .map(UnitAsNull)
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, Self::Error> {
        self.0.serialize_map(len).map(UnitAsNull)
    }

    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, Self::Error> {
        self.0.serialize_struct(name, len).map(UnitAsNull)
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, Self::Error> {
        self.0
            .serialize_struct_variant(name, index, variant, len)
            .map(UnitAsNull)
    }

    // cbor4ii's answer (binary), so that types that ask, such as
    // addresses, keep their compact form.
    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// The compound parts whose values are positional: each value nested.
macro_rules! positional {
    ($($part:ident::$method:ident),* $(,)?) => {
        $(impl<S: ser::$part> ser::$part for UnitAsNull<S> {
            type Ok = S::Ok;
            type Error = S::Error;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), S::Error> {
                self.0.$method(&Nested(value))
            }

            fn end(self) -> Result<S::Ok, S::Error> {
                self.0.end()
            }
        })*
    };
}

positional!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
);

/// The compound parts whose values are named fields.
macro_rules! named {
    ($($part:ident),* $(,)?) => {
        $(impl<S: ser::$part> ser::$part for UnitAsNull<S> {
            type Ok = S::Ok;
            type Error = S::Error;

            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), S::Error> {
                self.0.serialize_field(key, &Nested(value))
            }

            fn skip_field(&mut self, key: &'static str) -> Result<(), S::Error> {
                self.0.skip_field(key)
            }

            fn end(self) -> Result<S::Ok, S::Error> {
                self.0.end()
            }
        })*
    };
}

named!(SerializeStruct, SerializeStructVariant);

impl<S: ser::SerializeMap> ser::SerializeMap for UnitAsNull<S> {
    type Ok = S::Ok;
    type Error = S::Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), S::Error> {
        self.0.serialize_key(&Nested(key))
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), S::Error> {
        self.0.serialize_value(&Nested(value))
    }

    fn end(self) -> Result<S::Ok, S::Error> {
        self.0.end()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn round_trip(value: &Value) -> Value {
        cbor4ii::serde::from_slice(&to_vec(value).unwrap()).unwrap()
    }

    #[test]
    fn json_null_is_cbor_null_at_any_depth() {
        assert_eq!(to_vec(&Value::Null).unwrap(), [0xf6]);
        let value = json!({
            "a": null,
            "b": [null, 1, [null]],
            "c": {"d": null, "e": "x"},
            "f": [],
            "g": {},
        });
        assert_eq!(round_trip(&value), value);
        // Before, through cbor4ii alone:
        let plain: Value =
            cbor4ii::serde::from_slice(&cbor4ii::serde::to_vec(Vec::new(), &value).unwrap())
                .unwrap();
        assert_ne!(plain, value);
    }

    /// Everything but a unit is written exactly as cbor4ii writes it.
    #[test]
    fn everything_else_is_unchanged() {
        #[derive(Serialize)]
        enum Kind {
            Unit,
            Newtype(u8),
            Tuple(u8, i64),
            Struct { x: f64 },
        }
        #[derive(Serialize)]
        struct Message {
            text: String,
            #[serde(with = "serde_bytes")]
            bytes: Vec<u8>,
            kinds: Vec<Kind>,
            pair: (u8, char),
            maybe: Option<u32>,
            nothing: Option<u32>,
            #[serde(skip_serializing_if = "Option::is_none")]
            skipped: Option<u32>,
            map: std::collections::BTreeMap<String, i128>,
            addr: std::net::Ipv4Addr,
        }
        let message = Message {
            text: "héllo".into(),
            bytes: vec![0, 255],
            kinds: vec![
                Kind::Unit,
                Kind::Newtype(7),
                Kind::Tuple(1, -2),
                Kind::Struct { x: 0.5 },
            ],
            pair: (3, 'z'),
            maybe: Some(9),
            nothing: None,
            skipped: None,
            map: [("k".to_owned(), -(1 << 70))].into(),
            addr: std::net::Ipv4Addr::LOCALHOST,
        };
        assert_eq!(
            to_vec(&message).unwrap(),
            cbor4ii::serde::to_vec(Vec::new(), &message).unwrap()
        );
    }
}
