"""A bleak backend on bumble: the real `BleakScanner` / `BleakClient` API with no Bluetooth adapter.

bleak picks a platform backend (BlueZ on Linux) unless it is handed one with `backend=`. The two
classes here implement bleak's backend interfaces (`BaseBleakScanner`, `BaseBleakClient`) on a bumble
central `Device` whose virtual controller sits on an in-process `bumble.link.LocalLink`, next to the
virtual wearables of `firmware_bridge.virtual`. Code written against bleak's public API
(`firmware_bridge.client.EcgClient` included) then runs unchanged in tests and on a laptop:

    async with virtual_link(VirtualWearable(signal_uv, 130.0)) as vlink:
        device = await BleakScanner.find_device_by_name("Polar H10 VIRTUAL", backend=vlink.scanner_backend)
        async with BleakClient(device, backend=vlink.client_backend) as client:
            ...

How bleak maps onto bumble:

| bleak backend call | bumble |
|---|---|
| scanner `start()` / `stop()` | `Device.start_scanning()` / `stop_scanning()` on the shared central, ref-counted; every `Device` "advertisement" event becomes a `BLEDevice` + `AdvertisementData` |
| client `connect()` | `Device.connect(address, timeout)`, then `Peer.request_mtu(247)`, then discovery of services, characteristics and descriptors into a `BleakGATTServiceCollection` (`obj` of each item is the bumble proxy) |
| `mtu_size` | `Connection.att_mtu` (negotiated; bleak's BlueZ backend reports 23 instead) |
| `read_gatt_char` / `write_gatt_char` | `Peer.read_value` / `Peer.write_value(with_response=...)`; an ATT error response becomes `BleakGATTProtocolError` |
| `start_notify` / `stop_notify` | `Peer.subscribe(proxy, cb, prefer_notify=True)` (writes the CCCD) / `Peer.unsubscribe` |
| disconnected callback | the connection's "disconnection" event (called on every disconnect, as BlueZ does) |

The classes are bound to one link by subclassing (`VirtualLink.client_backend`, `.scanner_backend`),
because bleak instantiates the class it is given itself.
"""
from __future__ import annotations

import asyncio
import uuid as _uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, ClassVar

from bleak.assigned_numbers import CHARACTERISTIC_PROPERTIES
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakDeviceNotFoundError, BleakError, BleakGATTProtocolError
from bumble import hci
from bumble.att import ATT_Error
from bumble.controller import Controller
from bumble.core import UUID, AdvertisingData
from bumble.core import TimeoutError as BumbleTimeoutError
from bumble.device import Advertisement, Connection, Device, Peer
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

#: Address of the virtual central (the "adapter") on every link.
CENTRAL_ADDRESS = "C0:EC:ED:6E:00:01"
#: ATT MTU the client asks for: a 229-byte PMD frame needs at least 232 (FACTS).
DEFAULT_MTU = 247


def bumble_device(link: LocalLink, name: str, address: str) -> Device:
    """A bumble `Device` on its own virtual controller attached to `link` (needs a running loop)."""
    controller = Controller(name, link=link, public_address=address)
    # LE Data Length Extension (251-byte link-layer payloads, as a Pi and an H10 negotiate): a
    # 232-byte ATT PDU then crosses HCI in 1 ACL packet instead of 9, a 3x faster virtual link.
    controller.le_acl_data_packet_length = controller.acl_data_packet_length = 251
    return Device(name=name, address=hci.Address(address), host=Host(controller, AsyncPipeSink(controller)))


def bleak_uuid(uuid: UUID) -> str:
    """bumble UUID -> bleak's form: lowercase 128-bit string (16-bit ones on the SIG base UUID)."""
    return str(_uuid.UUID(bytes=bytes(reversed(uuid.uuid_128_bytes))))


def advertisement_data(adv: Advertisement) -> tuple[str | None, AdvertisementData]:
    """Translate a bumble advertisement into (local name, bleak `AdvertisementData`)."""
    data = adv.data
    name = data.get(AdvertisingData.COMPLETE_LOCAL_NAME) or data.get(AdvertisingData.SHORTENED_LOCAL_NAME)
    uuids: list[str] = []
    for ad_type in (AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
                    AdvertisingData.INCOMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
                    AdvertisingData.COMPLETE_LIST_OF_32_BIT_SERVICE_CLASS_UUIDS,
                    AdvertisingData.INCOMPLETE_LIST_OF_32_BIT_SERVICE_CLASS_UUIDS,
                    AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
                    AdvertisingData.INCOMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS):
        for found in data.get_all(ad_type):
            uuids += [u for u in map(bleak_uuid, found) if u not in uuids]
    service_data = {}
    for ad_type in (AdvertisingData.SERVICE_DATA_16_BIT_UUID, AdvertisingData.SERVICE_DATA_32_BIT_UUID,
                    AdvertisingData.SERVICE_DATA_128_BIT_UUID):
        service_data.update({bleak_uuid(u): bytes(v) for u, v in data.get_all(ad_type)})
    manufacturer = {int(c): bytes(v) for c, v in data.get_all(AdvertisingData.MANUFACTURER_SPECIFIC_DATA)}
    tx = data.get(AdvertisingData.TX_POWER_LEVEL)
    return name, AdvertisementData(local_name=name, manufacturer_data=manufacturer, service_data=service_data,
                                   service_uuids=uuids, tx_power=tx, rssi=int(adv.rssi), platform_data=(adv,))


class VirtualLink:
    """One `LocalLink`, the central `Device` every bound scanner and client shares, and the wearables.

    Create it inside a running event loop (bumble's controllers need one); prefer `virtual_link()`.
    `client_backend` and `scanner_backend` are backend classes bound to this link, for
    `BleakClient(..., backend=...)` and `BleakScanner(..., backend=...)`.
    """

    def __init__(self) -> None:
        self.link = LocalLink()
        self.central = bumble_device(self.link, "ecg-edge central", CENTRAL_ADDRESS)
        self.wearables: list[Any] = []
        self.seen: dict[str, hci.Address] = {}  # address string -> bumble address, from advertisements
        self._scanners: set[object] = set()
        self._lock = asyncio.Lock()
        self._powered = False
        self.client_backend: type[BumbleClientBackend] = type(
            "BumbleClientBackend", (BumbleClientBackend,), {"vlink": self, "__module__": __name__})
        self.scanner_backend: type[BumbleScannerBackend] = type(
            "BumbleScannerBackend", (BumbleScannerBackend,), {"vlink": self, "__module__": __name__})
        self.central.on(Device.EVENT_ADVERTISEMENT, self._remember)

    def _remember(self, adv: Advertisement) -> None:
        self.seen[str(adv.address).upper()] = adv.address

    @property
    def time_scale(self) -> float:
        """Device seconds per host second: the fastest wearable's replay `speed` (1 with none).
        `EcgClient` reads it to bound device timestamps by the host clock (`polar.ClockGuard`)."""
        return max([float(getattr(w, "speed", 1.0)) for w in self.wearables] or [1.0])

    async def power_on(self) -> None:
        async with self._lock:
            if not self._powered:
                await self.central.power_on()
                self._powered = True

    async def add(self, wearable: Any) -> Any:
        """Attach a wearable (anything with `async attach(link)`) and return it."""
        await wearable.attach(self.link)
        self.wearables.append(wearable)
        return wearable

    async def start_scan(self, token: object) -> None:
        await self.power_on()
        async with self._lock:
            if not self._scanners:
                await self.central.start_scanning(active=True, scan_interval=10, scan_window=10)
            self._scanners.add(token)

    async def stop_scan(self, token: object) -> None:
        async with self._lock:
            self._scanners.discard(token)
            if not self._scanners and self.central.is_scanning:
                await self.central.stop_scanning()

    async def resolve(self, address: str, timeout: float) -> hci.Address:
        """The bumble address for an address string, scanning for it when not seen yet."""
        key = address.upper()
        if key in self.seen:
            return self.seen[key]
        token = object()
        await self.start_scan(token)
        try:
            async with asyncio.timeout(timeout):
                while key not in self.seen:
                    await asyncio.sleep(0.01)
        except TimeoutError:
            raise BleakDeviceNotFoundError(address, f"device with address {address} was not found") from None
        finally:
            await self.stop_scan(token)
        return self.seen[key]

    async def close(self) -> None:
        """Stop every wearable and the central (idempotent)."""
        for wearable in self.wearables:
            await wearable.close()
        self.wearables.clear()
        for connection in list(self.central.connections.values()):
            await _quiet_disconnect(connection)
        if self._powered:
            await self.central.power_off()
            self._powered = False


@asynccontextmanager
async def virtual_link(*wearables: Any) -> AsyncIterator[VirtualLink]:
    """Create a `VirtualLink`, attach `wearables` (powered on and advertising), close it on exit."""
    vlink = VirtualLink()
    try:
        await vlink.power_on()
        for wearable in wearables:
            await vlink.add(wearable)
        yield vlink
    finally:
        await vlink.close()


async def _quiet_disconnect(connection: Connection) -> None:
    try:
        await connection.disconnect(hci.HCI_REMOTE_USER_TERMINATED_CONNECTION_ERROR)
    except Exception:  # already gone: the disconnection raced us
        pass


class BumbleScannerBackend(BaseBleakScanner):
    """`BaseBleakScanner` on the shared bumble central of `vlink` (set by `VirtualLink`)."""

    vlink: ClassVar[VirtualLink]

    def __init__(self, detection_callback: Any = None, service_uuids: list[str] | None = None,
                 scanning_mode: str = "active", **kwargs: Any) -> None:
        super().__init__(detection_callback, service_uuids)
        self._token = object()

    def _on_advertisement(self, adv: Advertisement) -> None:
        name, data = advertisement_data(adv)
        if not self.is_allowed_uuid(data.service_uuids):
            return
        address = str(adv.address).upper()
        device = self.create_or_update_device(address, address, name, adv.address, data)
        self.call_detection_callbacks(device, data)

    async def start(self) -> None:
        self.seen_devices = {}
        self.vlink.central.on(Device.EVENT_ADVERTISEMENT, self._on_advertisement)
        await self.vlink.start_scan(self._token)

    async def stop(self) -> None:
        self.vlink.central.remove_listener(Device.EVENT_ADVERTISEMENT, self._on_advertisement)
        await self.vlink.stop_scan(self._token)


class BumbleClientBackend(BaseBleakClient):
    """`BaseBleakClient` on the shared bumble central of `vlink` (set by `VirtualLink`).

    Extra keyword argument (through `BleakClient(..., mtu=...)`): the ATT MTU to request (247).
    """

    vlink: ClassVar[VirtualLink]

    def __init__(self, address_or_ble_device: BLEDevice | str, *, disconnected_callback: Callable[[], None] | None = None,
                 timeout: float = 10.0, services: set[str] | None = None, mtu: int = DEFAULT_MTU,
                 **kwargs: Any) -> None:
        super().__init__(address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout)
        self._device = address_or_ble_device if isinstance(address_or_ble_device, BLEDevice) else None
        self._service_filter = services
        self._mtu = mtu
        self._connection: Connection | None = None
        self._peer: Peer | None = None
        self._subscribers: dict[int, Callable[[bytes], None]] = {}

    @property
    def name(self) -> str:
        if self._device is not None and self._device.name:
            return self._device.name
        return self.address.replace(":", "-")

    @property
    def mtu_size(self) -> int:
        return self._connection.att_mtu if self._connection is not None else 23

    @property
    def is_connected(self) -> bool:
        return self._connection is not None

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        await self.vlink.power_on()
        if self._device is not None and isinstance(self._device.details, hci.Address):
            address = self._device.details
        else:
            address = await self.vlink.resolve(self.address, self._timeout)
        try:
            connection = await self.vlink.central.connect(address, timeout=self._timeout)
        except BumbleTimeoutError:
            raise TimeoutError(f"connecting to {self.address} timed out after {self._timeout:g} s") from None
        self._connection = connection
        connection.on(Connection.EVENT_DISCONNECTION, self._on_disconnection)
        self._peer = Peer(connection)
        try:
            async with asyncio.timeout(self._timeout):
                if pair:
                    await connection.pair()
                await self._call(self._peer.request_mtu(self._mtu))
                self.services = await self._discover()
        except BaseException:
            await self.disconnect()
            raise

    async def _discover(self) -> BleakGATTServiceCollection:
        """Discover services, characteristics and descriptors into bleak's collection."""
        assert self._peer is not None
        uuids = [UUID(u) for u in self._service_filter] if self._service_filter else []
        collection = BleakGATTServiceCollection()
        for service in await self._call(self._peer.discover_services(uuids)):
            bservice = BleakGATTService(service, service.handle, bleak_uuid(service.uuid))
            collection.add_service(bservice)
            for char in await self._call(service.discover_characteristics()):
                props = [name for bit, name in CHARACTERISTIC_PROPERTIES.items() if char.properties & bit]
                bchar = BleakGATTCharacteristic(char, char.handle, bleak_uuid(char.uuid), props,
                                                lambda: self.mtu_size - 3, bservice)
                collection.add_characteristic(bchar)
                for desc in await self._call(char.discover_descriptors()):
                    collection.add_descriptor(BleakGATTDescriptor(desc, desc.handle, bleak_uuid(desc.type), bchar))
        return collection

    def _on_disconnection(self, reason: int) -> None:
        self._connection = None
        self._peer = None
        self._subscribers.clear()
        if self._disconnected_callback is not None:
            self._disconnected_callback()

    async def disconnect(self) -> None:
        if self._connection is not None:
            await _quiet_disconnect(self._connection)
            self._connection = None
            self._peer = None

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        await self._call(self._require().connection.pair())

    async def unpair(self) -> None:
        raise NotImplementedError("the virtual link keeps no bonds: nothing to unpair")

    def _require(self) -> Peer:
        if self._peer is None:
            raise BleakError("Not connected")
        return self._peer

    async def _call(self, awaitable: Any) -> Any:
        """Await a bumble GATT operation, mapping its failures onto bleak's exceptions.

        bumble cancels a pending ATT request when the link drops, which would surface as a bare
        `CancelledError`; a disconnect becomes `BleakError` here, as with bleak's own backends.
        """
        try:
            return await awaitable
        except ATT_Error as exc:
            raise BleakGATTProtocolError(exc.error_code) from exc
        except BumbleTimeoutError as exc:
            raise TimeoutError(str(exc)) from exc
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            raise BleakError(f"{self.address} disconnected during a GATT operation") from None

    async def read_gatt_char(self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False,
                             **kwargs: Any) -> bytearray:
        return bytearray(await self._call(self._require().read_value(characteristic.handle)))

    async def read_gatt_descriptor(self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False,
                                   **kwargs: Any) -> bytearray:
        return bytearray(await self._call(self._require().read_value(descriptor.handle)))

    async def write_gatt_char(self, characteristic: BleakGATTCharacteristic, data: Any, response: bool) -> None:
        await self._call(self._require().write_value(characteristic.handle, bytes(data), with_response=response))

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: Any) -> None:
        await self._call(self._require().write_value(descriptor.handle, bytes(data), with_response=True))

    async def start_notify(self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback,
                           **kwargs: Any) -> None:
        def on_value(value: bytes) -> None:
            callback(bytearray(value))
        await self._call(self._require().subscribe(characteristic.obj, on_value, prefer_notify=True))
        self._subscribers[characteristic.handle] = on_value

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        subscriber = self._subscribers.pop(characteristic.handle, None)
        await self._call(self._require().unsubscribe(characteristic.obj, subscriber))
